"""Reading a JSON request body safely.

FastAPI's own body parsing would turn a 100,000-deep array into a RecursionError
(a 500) and cannot enforce a size limit on a chunked upload; so bodies are read
here: bounded in bytes while streaming (413), strict UTF-8, orjson for parsing,
then an iterative depth check (400), then a Pydantic model (422).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from flowctl.api.errors import ApiError, field_path
from flowctl.config import Settings
from flowctl.domain.graph import FieldError

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, settings: Settings, *, optional: bool = False) -> Any:
    """The request's JSON body within this server's limits. With `optional`, an
    empty body is None instead of a 400."""
    return await read_json(
        request,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        optional=optional,
    )


async def read_model(request: Request, model: type[M], settings: Settings) -> M:
    """The request's JSON body, read within the limits, as `model` (else 400/413/422)."""
    return parse_model(model, await read_body(request, settings))


async def read_json(
    request: Request, *, max_bytes: int, max_depth: int, optional: bool = False
) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"Request body is {declared} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"Request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if optional:
            return None
        raise ApiError(400, "Request body is empty: send a JSON object")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"Request body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson refuses nesting past 1024 itself
            raise ApiError(
                400, f"Request body is nested more than {max_depth} levels deep"
            ) from None
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from None
    depth = json_depth(value, limit=max_depth)
    if depth > max_depth:
        raise ApiError(400, f"Request body is nested more than {max_depth} levels deep")
    return value


def json_depth(value: Any, *, limit: int) -> int:
    """Nesting depth of a parsed JSON value, without recursion; stops past `limit`.

    Raises ApiError (400) for a string or key holding U+0000: PostgreSQL cannot
    store it in text or JSONB, and no workflow needs it. Checked in this one walk
    so that every body is refused the same way on both databases.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, str):
            _refuse_nul(current)
            continue
        if isinstance(current, dict):
            for key in current:
                _refuse_nul(key)
            children = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _refuse_nul(text: str) -> None:
    if "\x00" in text:
        raise ApiError(400, "Request body contains a NUL character (\\u0000), which is not allowed")


def parse_model(model: type[M], value: Any) -> M:
    """Validate parsed JSON against a model; every problem becomes a 422 field error."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [
            FieldError(field_path(err["loc"]) or "body", err["msg"], err["type"])
            for err in exc.errors(include_url=False)
        ]
        summary = "; ".join(str(e) for e in errors)
        raise ApiError(422, f"Validation failed: {summary}", errors) from None
