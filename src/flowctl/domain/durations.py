"""Human durations ("1h", "5m", "1.5s", "250ms", "1h30m") as seconds."""

from __future__ import annotations

import math
import re
from decimal import Decimal

# Exact decimal sizes, so "1.5ms" or "1.1h" add up without binary rounding on
# the way and format_duration(parse_duration(x)) gives x back.
_UNITS = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: str | int | float) -> float:
    """Seconds for a duration string or a plain number of seconds.

    Raises ValueError with a message fit for an API client.
    """
    if isinstance(value, bool):
        raise ValueError("a duration must be a string like '30s' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise ValueError("a duration must not be empty")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, total = 0, Decimal(0)
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                total += Decimal(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or pos == 0:
                raise ValueError(
                    f"invalid duration {value!r}: use a number with a unit, "
                    "like '500ms', '30s', '5m', '1h' or '1h30m'"
                )
            seconds = float(total)
    else:
        raise ValueError("a duration must be a string like '30s' or a number of seconds")
    if not math.isfinite(seconds):  # NaN or infinity (JSON's 1e999 parses as inf)
        raise ValueError(f"invalid duration {value!r}: must be a finite number")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return seconds


def _plain(number: Decimal) -> str:
    """`number` in positional notation (never '1e+06'), without trailing zeros."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_duration(seconds: float) -> str:
    """The shortest exact spelling, for echoing a config back."""
    # repr() is the shortest decimal that reads back as the same float.
    exact = Decimal(repr(float(seconds)))
    if seconds and seconds < 1:
        return f"{_plain(exact * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{_plain(exact)}s"
    for unit, size in (("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
