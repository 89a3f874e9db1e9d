"""Timestamps as the API renders them."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from flowctl.api.render import iso, parse_iso

NOON = 1704110400  # 2024-01-01T12:00:00Z


def test_none_stays_none():
    assert iso(None) is None


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (NOON, "2024-01-01T12:00:00Z"),
        (float(NOON), "2024-01-01T12:00:00Z"),
        (0.0, "1970-01-01T00:00:00Z"),
        (NOON + 86399.0, "2024-01-02T11:59:59Z"),
        (1709208000.0, "2024-02-29T12:00:00Z"),
        (253402300799.0, "9999-12-31T23:59:59Z"),
    ],
)
def test_whole_seconds_have_no_fraction(ts, text):
    assert iso(ts) == text


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (NOON + 0.123456, "2024-01-01T12:00:00.123456Z"),
        (NOON + 0.5, "2024-01-01T12:00:00.500000Z"),
        (NOON + 0.000001, "2024-01-01T12:00:00.000001Z"),
        (NOON + 59.25, "2024-01-01T12:00:59.250000Z"),
        (1.5, "1970-01-01T00:00:01.500000Z"),
    ],
)
def test_fractions_have_six_digits(ts, text):
    assert iso(ts) == text


def test_rounds_to_the_microsecond():
    assert iso(NOON + 0.9999996) == "2024-01-01T12:00:01Z"
    assert iso(NOON + 0.0000004) == "2024-01-01T12:00:00Z"
    assert iso(NOON + 0.1234564) == "2024-01-01T12:00:00.123456Z"


def test_years_before_1000_keep_four_digits():
    ts = datetime(999, 12, 31, 23, 59, 59, 250000, tzinfo=UTC).timestamp()
    assert iso(ts) == "0999-12-31T23:59:59.250000Z"


def test_same_text_as_isoformat():
    rng = random.Random(20240101)
    samples = [rng.uniform(0, 4e9) for _ in range(5000)]
    samples += [round(rng.uniform(1.7e9, 1.8e9), rng.randrange(0, 7)) for _ in range(5000)]
    samples += [float(rng.randrange(0, 4 * 10**9)) for _ in range(1000)]
    for ts in samples:
        expected = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
        assert iso(ts) == expected, ts


def test_parse_iso_reads_it_back():
    for ts in (float(NOON), NOON + 0.123456, NOON + 0.5):
        assert parse_iso(iso(ts)) == pytest.approx(ts, abs=1e-6)
