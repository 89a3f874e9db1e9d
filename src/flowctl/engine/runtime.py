"""Everything a flowctl process runs besides HTTP: the database, wake-ups,
the PostgreSQL listener and (unless disabled) a worker."""

from __future__ import annotations

import asyncio
import logging

from flowctl.config import Settings
from flowctl.engine.agents import AgentService
from flowctl.engine.service import WorkflowService
from flowctl.engine.wakeups import PostgresListener, Wakeups
from flowctl.engine.worker import Worker
from flowctl.executors.agent import AgentTarget
from flowctl.executors.base import ExecutorRegistry, StepFailed
from flowctl.executors.registry import default_registry
from flowctl.security.egress import EgressPolicy
from flowctl.store.database import Database, DatabaseUnavailable, asyncpg_dsn

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        with_worker: bool | None = None,
        registry: ExecutorRegistry | None = None,
    ):
        self.settings = settings
        self.with_worker = settings.run_worker if with_worker is None else with_worker
        self.registry = registry or default_registry()
        self.db = Database(
            settings.db_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.db_pool_size,
        )
        self.wakeups = Wakeups()
        self.service = WorkflowService(self.db, self.registry, self.wakeups, settings)
        self.agents = AgentService(self.db, settings)
        self.egress = EgressPolicy.from_settings(settings)
        self.worker: Worker | None = None
        self._listener: PostgresListener | None = None

    async def start(self) -> None:
        self.db.open()
        delay = 0.5
        while True:
            try:
                await self.db.migrate()
                break
            except DatabaseUnavailable as exc:
                # A worker may start before its database: wait for it.
                log.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self.db.is_postgres:
            self._listener = PostgresListener(asyncpg_dsn(self.db.url), self.wakeups)
            self._listener.start()
        if self.with_worker:
            self.worker = Worker(
                self.db,
                self.registry,
                self.settings,
                self.wakeups,
                resolve_agent=self._agent_target,
            )
            await self.worker.start()

    async def _agent_target(self, name: str) -> AgentTarget | None:
        """A registered, active agent as the `agent` executor calls it."""
        agent = (await self.agents.resolve([name])).get(name)
        if agent is None:
            return None
        if agent.status != "active":
            raise StepFailed(f"agent '{name}' is {agent.status}", retryable=False)
        return AgentTarget(
            url=agent.url,
            auth_type=agent.auth_type,
            auth_config=agent.auth_config or {},
            timeout_s=agent.timeout_ms / 1000,
            egress=self.egress,
        )

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self._listener is not None:
            await self._listener.stop()
        await self.db.close()
