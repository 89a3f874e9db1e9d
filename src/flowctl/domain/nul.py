"""U+0000 in JSON values.

PostgreSQL stores the NUL character neither in `text` nor in `jsonb`, so a value
holding one cannot be kept there; SQLite could, but a workflow must not behave
differently on the two databases. The API refuses NUL in what it is sent; a
step's output holding one fails the step, and diagnostics (error messages, log
lines) have it replaced with U+FFFD.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"


def has_nul(value: Any) -> bool:
    """Whether any string in a JSON-like value (keys included) holds U+0000."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def without_nul(value: Any) -> Any:
    """`value` with every U+0000 in its strings (keys included) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value
