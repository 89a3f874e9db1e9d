"""Connections, transactions and migrations for SQLite and PostgreSQL.

Store functions are plain synchronous functions `fn(conn, ...)` that run inside
one transaction. `Database.write` and `Database.read` run them:

- SQLite: in a dedicated writer thread (one writer, so no SQLITE_BUSY and a
  single thread hop per transaction instead of one per statement, which is what
  aiosqlite would cost), reads on a small pool of reader threads under WAL;
- PostgreSQL: on the asyncpg driver through SQLAlchemy's async engine
  (`run_sync`), retrying deadlocks and serialization failures.

A database that cannot be reached raises DatabaseUnavailable, which callers
treat as "back off and try again", never as a step or run failure.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from flowctl.store.clock import register_sqlite_clock

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every flowctl process.
_MIGRATION_LOCK_KEY = 0x666C6F77  # "flow"
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock


class DatabaseUnavailable(Exception):
    """The database cannot be reached right now; try again later."""


class DataDirLocked(Exception):
    """Another flowctl process already serves this SQLite database."""


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def normalize_url(url: str) -> URL:
    """postgresql://... gets the asyncpg driver; sqlite URLs stay as they are."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    return parsed.set(drivername="sqlite")


def asyncpg_dsn(url: URL) -> str:
    """The plain DSN asyncpg.connect() takes, for the LISTEN connection."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _is_unavailable(exc: BaseException) -> bool:
    """True for PostgreSQL errors that mean "not reachable now". (SQLite is
    embedded: its OperationalErrors are real errors, such as a full disk.)"""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, OperationalError | InterfaceError):
            return True
        state = _sqlstate(exc) or ""
        # class 08: connection exception; 57P0x: admin shutdown / cannot connect now
        return state.startswith("08") or state.startswith("57P")
    return isinstance(exc, OSError | ConnectionError | asyncio.TimeoutError)


class Database:
    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 10):
        self.url = normalize_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = not self.is_sqlite
        self._sqlite_synchronous = sqlite_synchronous
        self._pool_size = pool_size
        self._lock_file: Any = None
        self._write_engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._async_engine: AsyncEngine | None = None

    # --- lifecycle -------------------------------------------------------------

    def open(self, *, lock: bool = True) -> None:
        """Create engines. With `lock`, SQLite's data directory is locked for us.
        Opening an open database does nothing."""
        if self._write_engine is not None or self._async_engine is not None:
            return
        if self.is_sqlite:
            path = self.url.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                if lock:
                    self._lock_data_dir(Path(path))
            self._write_engine = self._sqlite_engine(begin="BEGIN IMMEDIATE", pool_size=1)
            self._read_engine = self._sqlite_engine(begin="BEGIN", pool_size=4)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="flowctl-db-writer")
            self._readers = ThreadPoolExecutor(4, thread_name_prefix="flowctl-db-reader")
        else:
            self._async_engine = create_async_engine(
                self.url,
                pool_size=self._pool_size,
                max_overflow=self._pool_size,
                # Pinged only after idling (see _ping_if_idle), not on every
                # checkout: a ping is a round trip per transaction.
                pool_pre_ping=False,
                pool_recycle=1800,
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
                connect_args={
                    "timeout": 5,
                    "command_timeout": 60,
                },
            )
            event.listen(self._async_engine.sync_engine, "checkout", _ping_if_idle)
            event.listen(self._async_engine.sync_engine, "checkin", _note_checkin)

    def _lock_data_dir(self, db_path: Path) -> None:
        lock_path = db_path.with_suffix(".lock")
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirLocked(
                f"{db_path} is in use by another flowctl process; SQLite serves one process. "
                "Use PostgreSQL (FLOWCTL_DATABASE_URL) to run several."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _sqlite_engine(self, *, begin: str, pool_size: int) -> Engine:
        engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=0,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        synchronous = self._sqlite_synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
            dbapi_conn.isolation_level = None
            register_sqlite_clock(dbapi_conn)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql(begin)

        return engine

    async def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        if self.is_sqlite:
            await self.write(_upgrade)
            return
        assert self._async_engine is not None
        try:
            async with self._async_engine.begin() as conn:
                # Several processes may start at once: one migrates, the others wait.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                )
                await conn.run_sync(_upgrade)
        except Exception as exc:
            if _is_unavailable(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    async def close(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
        for pool in (self._writer, self._readers):
            if pool is not None:
                pool.shutdown(wait=True)
        for engine in (self._write_engine, self._read_engine):
            if engine is not None:
                engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- transactions ----------------------------------------------------------

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in a read-write transaction."""
        if self.is_sqlite:
            assert self._writer is not None and self._write_engine is not None
            call = partial(_in_transaction, self._write_engine, fn, args, kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._writer, call)
        return await self._postgres(fn, args, kwargs)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in a transaction that only reads."""
        if self.is_sqlite:
            assert self._readers is not None and self._read_engine is not None
            call = partial(_in_transaction, self._read_engine, fn, args, kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._readers, call)
        return await self._postgres(fn, args, kwargs)

    async def _postgres(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        assert self._async_engine is not None
        for attempt in range(6):
            try:
                async with self._async_engine.begin() as conn:
                    return await conn.run_sync(fn, *args, **kwargs)
            except DBAPIError as exc:
                if _sqlstate(exc) in _RETRYABLE_SQLSTATES and attempt < 5:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                if _is_unavailable(exc):
                    raise DatabaseUnavailable(str(exc.orig or exc)) from exc
                raise
            except (TimeoutError, OSError, ConnectionError) as exc:
                raise DatabaseUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        await self.read(_ping)


# A connection that has just been used is alive; one that idled in the pool
# may have been cut by a database restart, and is pinged before use so that
# the restart costs no caller an error. (SQLAlchemy's pool_pre_ping pings on
# every checkout, a round trip per transaction on the queue's hot path.)
_IDLE_BEFORE_PING = 1.0


def _note_checkin(_dbapi_conn, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
    if time.monotonic() - record.info.get("checked_in_at", 0.0) < _IDLE_BEFORE_PING:
        return
    try:
        dbapi_conn.ping()
    except Exception as exc:
        # The pool discards this connection and checks out another.
        raise DisconnectionError(str(exc)) from exc


def _in_transaction(engine: Engine, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    with engine.begin() as conn:
        return fn(conn, *args, **kwargs)


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


def _upgrade(conn: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
