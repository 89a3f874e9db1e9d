"""Rendering shared by every surface: timestamps and pagination."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import JSONResponse

_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))
_from_timestamp = datetime.fromtimestamp


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC with a Z, e.g. 2024-01-01T12:00:00.123456Z;
    whole seconds have no fraction (2024-01-01T12:00:00Z).

    The same text as `datetime.isoformat()` with the offset as Z, at about 60% of
    its cost: responses render several per step, and the aware isoformat plus
    replace was the top line of rendering a large workflow.
    """
    if ts is None:
        return None
    d = _from_timestamp(ts, UTC)  # rounds to the microsecond, half to even
    year = d.year
    if year < 1000:  # isoformat pads the year to four digits
        return d.isoformat().replace("+00:00", "Z")
    two = _TWO_DIGITS
    us = d.microsecond
    if us:
        return (
            f"{year}-{two[d.month]}-{two[d.day]}T{two[d.hour]}:{two[d.minute]}:"
            f"{two[d.second]}.{us:06d}Z"
        )
    return f"{year}-{two[d.month]}-{two[d.day]}T{two[d.hour]}:{two[d.minute]}:{two[d.second]}Z"


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    """ISO 8601 (a trailing Z allowed; naive means UTC) as epoch seconds."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def page_keys(items_key: str, items: list[Any], total: int, page: int, size: int) -> dict:
    """Both pagination vocabularies at once (PRODUCT.md: list responses carry
    `items` and the surface's own key, `page_size` and `limit`)."""
    body = {
        items_key: items,
        "total": total,
        "page": page,
        "limit": size,
        "page_size": size,
        "total_pages": math.ceil(total / size) if size else 0,
    }
    if items_key != "items":
        body["items"] = items
    return body


class JSONBody(JSONResponse):
    """A JSON response rendered by orjson.

    FastAPI deprecated its ORJSONResponse in favour of response models; our
    routes build plain dicts (several surfaces render one model differently),
    so this two-line class keeps orjson's speed without a response model.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
