"""The append-only event stream: every state change and log line of a run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from flowctl.store.schema import events


def event_row(
    run_id: str,
    type_: str,
    now: float,
    *,
    step_id: str | None = None,
    level: str = "info",
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "step_id": step_id,
        "type": type_,
        "level": level,
        "message": message,
        "data": data,
        "created_at": now,
    }


_INSERT = insert(events)


def append_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT, rows)


def list_run_events(
    conn: Connection,
    run_id: str,
    *,
    after_id: int = 0,
    types: list[str] | None = None,
    levels: list[str] | None = None,
    offset: int = 0,
    limit: int = 1000,
) -> tuple[list[dict[str, Any]], int]:
    where = [events.c.run_id == run_id, events.c.id > after_id]
    if types:
        where.append(events.c.type.in_(types))
    if levels:
        where.append(events.c.level.in_(levels))
    total = conn.execute(select(func.count()).select_from(events).where(*where)).scalar_one()
    rows = conn.execute(
        select(events).where(*where).order_by(events.c.id).offset(offset).limit(limit)
    ).mappings()
    return [dict(r) for r in rows], total
