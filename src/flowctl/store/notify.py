"""Wake-ups between processes: PostgreSQL NOTIFY, sent inside the transaction
that made the change, so listeners hear of it only once it is committed.

A notification only wakes a sleeper; the database row stays the truth. On
SQLite there is one process, and in-process wake-ups (engine.wakeups) suffice.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

READY_CHANNEL = "flowctl_ready"  # steps became claimable
CANCEL_CHANNEL = "flowctl_cancel"  # payload: a run id whose running steps must stop


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(channel, payload)))
