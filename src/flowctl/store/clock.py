"""The database's clock, as epoch seconds.

Leases, backoff and timeouts are compared against the database's time so that
workers on machines with skewed clocks still agree on who owns what. Times are
stored as float epoch seconds: they compare and sort the same way on both
databases, and the API renders them as ISO 8601.

SQLite is embedded, so its clock is this process's clock; but its own `now`
has millisecond resolution, too coarse to time a step that takes a few ms.
Every flowctl SQLite connection gets `flowctl_now()` (`time.time()`, in
microseconds), and `read_now` reads the clock without a statement.
"""

from __future__ import annotations

import sqlite3
import time

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


SQLITE_NOW_FUNCTION = "flowctl_now"


def register_sqlite_clock(dbapi_conn: sqlite3.Connection) -> None:
    """Give a new SQLite connection the function db_now() compiles to."""
    dbapi_conn.create_function(SQLITE_NOW_FUNCTION, 0, time.time)


@compiles(db_now, "sqlite")
def _now_sqlite(element, compiler, **kw):
    return f"{SQLITE_NOW_FUNCTION}()"


_SELECT_NOW = select(db_now())


def read_now(conn: Connection) -> float:
    """The database's current time, read once per transaction and reused."""
    if conn.dialect.name == "sqlite":
        return time.time()
    return float(conn.execute(_SELECT_NOW).scalar_one())
