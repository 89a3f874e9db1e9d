"""Run and step ids: random version 4 UUIDs as strings."""

from __future__ import annotations

import uuid

from flowctl.engine.service import new_id, new_ids


def assert_uuid4(text: str) -> None:
    parsed = uuid.UUID(text)
    assert str(parsed) == text  # lower-case hex with dashes, 36 characters
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_new_ids_are_random_version_4_uuids():
    ids = new_ids(5000)
    assert len(ids) == 5000 and len(set(ids)) == 5000
    for text in ids:
        assert_uuid4(text)
    assert_uuid4(new_id())


def test_every_random_bit_varies():
    # Only the version and variant bits are fixed: over many ids every other
    # hex digit takes many values.
    ids = [i.replace("-", "") for i in new_ids(2000)]
    for pos in range(32):
        seen = {i[pos] for i in ids}
        if pos == 12:
            assert seen == {"4"}
        elif pos == 16:
            assert seen == set("89ab")
        else:
            assert len(seen) == 16, pos


def test_none_asked_none_given():
    assert new_ids(0) == []
