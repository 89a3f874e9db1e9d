"""Wake-ups: tell sleeping workers that work is ready or that runs were cancelled.

In one process, callbacks fire directly. Between processes on PostgreSQL, the
store sends NOTIFY inside the committing transaction and `PostgresListener`
turns it back into the same callbacks. A wake-up never carries the truth: the
woken worker reads the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import asyncpg

from flowctl.store.notify import CANCEL_CHANNEL, READY_CHANNEL

log = logging.getLogger(__name__)


class Wakeups:
    def __init__(self) -> None:
        self._on_ready: list[Callable[[], None]] = []
        self._on_cancel: list[Callable[[Iterable[str]], None]] = []

    def subscribe(
        self,
        on_ready: Callable[[], None],
        on_cancel: Callable[[Iterable[str]], None],
    ) -> None:
        self._on_ready.append(on_ready)
        self._on_cancel.append(on_cancel)

    def work_ready(self) -> None:
        for callback in self._on_ready:
            callback()

    def runs_cancelled(self, run_ids: Iterable[str]) -> None:
        run_ids = list(run_ids)
        if run_ids:
            for callback in self._on_cancel:
                callback(run_ids)


class PostgresListener:
    """LISTENs on a dedicated asyncpg connection and reconnects when it drops."""

    def __init__(self, dsn: str, wakeups: Wakeups):
        self._dsn = dsn
        self._wakeups = wakeups
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="flowctl-pg-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.2
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(READY_CHANNEL, self._ready)
                await conn.add_listener(CANCEL_CHANNEL, self._cancel)
                delay = 0.2
                # Notifications sent while we were disconnected are gone: look again.
                self._wakeups.work_ready()
                while not lost.is_set():
                    # asyncpg only notices a dead socket when it uses it.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=5)
                    if not lost.is_set():
                        try:
                            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=5)
                        except (
                            TimeoutError,
                            OSError,
                            asyncpg.PostgresError,
                            asyncpg.InterfaceError,
                        ):
                            lost.set()
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
            log.warning("LISTEN connection lost; reconnecting")

    def _ready(self, _conn, _pid, _channel, _payload) -> None:
        self._wakeups.work_ready()

    def _cancel(self, _conn, _pid, _channel, payload: str) -> None:
        self._wakeups.runs_cancelled([payload])
