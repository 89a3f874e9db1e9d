"""The database's clock, as epoch seconds.

Leases, backoff and timeouts are compared against the database's time so that
workers on machines with skewed clocks still agree on who owns what. Times are
stored as float epoch seconds: they compare and sort the same way on both
databases, and the API renders them as ISO 8601.
"""

from __future__ import annotations

from sqlalchemy import Double, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class db_now(FunctionElement):
    type = Double()
    inherit_cache = True


@compiles(db_now)
def _now_default(element, compiler, **kw):  # pragma: no cover - only the two below run
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "postgresql")
def _now_postgresql(element, compiler, **kw):
    # clock_timestamp(), not now(): now() is frozen at transaction start.
    return "extract(epoch from clock_timestamp())::double precision"


@compiles(db_now, "sqlite")
def _now_sqlite(element, compiler, **kw):
    # julianday('now') has millisecond resolution; 2440587.5 is the Unix epoch.
    return "((julianday('now') - 2440587.5) * 86400.0)"


_SELECT_NOW = select(db_now())


def read_now(conn: Connection) -> float:
    """The database's current time, read once per transaction and reused."""
    return float(conn.execute(_SELECT_NOW).scalar_one())
