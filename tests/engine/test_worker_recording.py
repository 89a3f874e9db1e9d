"""The worker's dispatch loop when the database refuses one outcome, in process
on a real SQLite file: every other outcome is still recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from flowctl.config import Settings
from flowctl.domain.graph import StepSpec, compile_tasks
from flowctl.domain.runsettings import RunSettings
from flowctl.engine.service import NewWorkflow, WorkflowService
from flowctl.engine.wakeups import Wakeups
from flowctl.engine.worker import Worker
from flowctl.executors.base import Executor, StepContext
from flowctl.executors.registry import default_registry
from flowctl.store import queue
from flowctl.store.database import Database

POISON = {"poison": True}


class Poison(Executor):
    type_name = "poison"

    async def execute(self, ctx: StepContext) -> Any:
        ctx.log("info", "about to return something the database refuses")
        return POISON


class RefusingDatabase(Database):
    """Refuses, like a data error would, any transaction recording POISON."""

    refused = 0

    async def write(self, fn, *args, **kwargs):
        if fn is queue.complete_and_claim and any(o.output == POISON for o in args[1]):
            RefusingDatabase.refused += 1
            raise ValueError("the database cannot store this value")
        return await super().write(fn, *args, **kwargs)


async def _wait_terminal(service: WorkflowService, run_ids: list[str]) -> list[tuple]:
    """Each run and its steps, once every run has ended."""
    for _ in range(500):
        found = [await service.get_run(run_id) for run_id in run_ids]
        if all(run["status"] in ("completed", "failed", "cancelled") for run, _ in found):
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"runs did not end: {found}")


def test_an_outcome_the_database_refuses_fails_its_step_and_holds_back_no_other(
    tmp_path: Path,
):
    async def scenario():
        db = RefusingDatabase(f"sqlite:///{tmp_path / 'flowctl.db'}")
        db.open()
        await db.migrate()
        registry = default_registry()
        registry.register(Poison())
        settings = Settings(data_dir=tmp_path)
        service = WorkflowService(db, registry, Wakeups(), settings)

        async def submit(*specs: StepSpec) -> str:
            graph = compile_tasks(list(specs), known_types=registry.type_names)
            run, _ = await service.submit(
                NewWorkflow(name="t", kind="tasks", graph=graph, settings=RunSettings())
            )
            return run["id"]

        worker = Worker(db, registry, settings, Wakeups())
        # They finish together: their outcomes can share one transaction.
        poisoned = await submit(StepSpec(name="p", type="poison"))
        fine = await submit(
            StepSpec(name="a", type="noop"), StepSpec(name="b", type="noop", dependencies=("a",))
        )
        await worker.start()
        try:
            (poisoned_run, steps), (fine_run, _) = await _wait_terminal(service, [poisoned, fine])
        finally:
            await worker.stop()
            await db.close()
        assert fine_run["status"] == "completed"
        assert poisoned_run["status"] == "failed"
        (step,) = steps
        assert step["status"] == "failed" and step["result"] is None
        assert step["error"] == "flowctl could not record this step's result: ValueError"
        assert step["retry_count"] == 0
        assert RefusingDatabase.refused >= 2  # in its batch, then alone

    asyncio.run(scenario())
