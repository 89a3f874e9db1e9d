"""Worker processes announce themselves here, for /metrics and readiness."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from flowctl.store.clock import read_now
from flowctl.store.schema import workers


def register_worker(
    conn: Connection, worker_id: str, *, hostname: str, pid: int, concurrency: int
) -> None:
    now = read_now(conn)
    conn.execute(
        insert(workers),
        {
            "id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "concurrency": concurrency,
            "running": 0,
            "started_at": now,
            "heartbeat_at": now,
        },
    )


def heartbeat_worker(conn: Connection, worker_id: str, running: int) -> None:
    conn.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(heartbeat_at=read_now(conn), running=running, stopped_at=None)
    )


def stop_worker(conn: Connection, worker_id: str) -> None:
    now = read_now(conn)
    conn.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=now, running=0))


def live_workers(conn: Connection, *, stale_after: float) -> list[dict[str, Any]]:
    """Workers that heartbeated within `stale_after` seconds and did not stop."""
    now = read_now(conn)
    rows = conn.execute(
        select(workers).where(
            workers.c.stopped_at.is_(None), workers.c.heartbeat_at >= now - stale_after
        )
    ).mappings()
    return [dict(r) for r in rows]


def prune_workers(conn: Connection, *, older_than: float) -> int:
    """Forget workers that stopped or went silent long ago."""
    now = read_now(conn)
    result = conn.execute(
        workers.delete().where(
            func.coalesce(workers.c.stopped_at, workers.c.heartbeat_at) < now - older_than
        )
    )
    return result.rowcount
