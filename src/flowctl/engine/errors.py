"""Errors a service raises for the API surfaces to render in their own shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowctl.domain.graph import FieldError
from flowctl.store.database import DatabaseUnavailable

if TYPE_CHECKING:
    from flowctl.store.database import Database


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """The request is well-formed JSON but its values are wrong (422), or it
    describes something that cannot run, like a cycle (400)."""

    def __init__(self, errors: Sequence[FieldError], *, status_code: int = 422):
        self.errors = list(errors)
        self.status_code = status_code
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid input")


class NotFound(ServiceError):
    status_code = 404

    def __init__(self, resource: str, resource_id: str):
        super().__init__(f"{resource} '{resource_id}' not found")
        self.resource = resource
        self.resource_id = resource_id


class Conflict(ServiceError):
    """The resource is not in a state that allows this (409)."""

    status_code = 409


class Unavailable(ServiceError):
    """The database cannot be reached right now (503)."""

    status_code = 503


async def call_store(
    db: Database, fn: Callable[..., Any], *args: Any, write: bool = False, **kwargs: Any
) -> Any:
    """Run a store function in a transaction (read-write with `write`); an
    unreachable database becomes Unavailable, which every surface answers 503."""
    try:
        if write:
            return await db.write(fn, *args, **kwargs)
        return await db.read(fn, *args, **kwargs)
    except DatabaseUnavailable as exc:
        raise Unavailable(f"database unavailable: {exc}") from exc
