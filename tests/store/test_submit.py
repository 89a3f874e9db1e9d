"""`WorkflowService.submit` answers with the run as stored without reading it
back: on SQLite and PostgreSQL its rows equal what `get_run` reads right after."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowctl.api.flowctl import WorkflowIn, render_workflow, to_new_workflow
from flowctl.config import Settings
from flowctl.domain.backoff import RetryPolicy
from flowctl.domain.graph import StepSpec, compile_tasks
from flowctl.domain.runsettings import RunSettings
from flowctl.engine.service import NewWorkflow, WorkflowService
from flowctl.engine.wakeups import Wakeups
from flowctl.executors.registry import default_registry
from flowctl.store import schema
from flowctl.store.database import Database


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'flowctl.db'}"


def assert_identical(got: Any, want: Any, where: str = "") -> None:
    """Equal, and of the same types all the way down (5 is not 5.0, a tuple is
    not a list). Rows keep their column order; JSON objects may not
    (PostgreSQL's jsonb reorders keys)."""
    assert type(got) is type(want), f"{where}: {got!r} vs {want!r}"
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            assert_identical(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_identical(a, b, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} vs {want!r}"


async def submit_and_read(url: str, workflows: list[NewWorkflow]) -> None:
    db = Database(url)
    db.open()
    try:
        await db.migrate()
        service = WorkflowService(db, default_registry(), Wakeups(), Settings())
        for wf in workflows:
            run, steps = await service.submit(wf)
            stored_run, stored_steps = await service.get_run(run["id"])
            assert list(run) == list(stored_run)  # every column, in table order
            assert [list(s) for s in steps] == [list(s) for s in stored_steps]
            assert_identical(run, stored_run, "run")
            assert_identical(steps, stored_steps, "steps")
            assert run["status"] == "pending" and run["started_at"] is None
            assert render_workflow(run, steps) == render_workflow(stored_run, stored_steps)
    finally:
        await db.close()


def flowctl_workflow(service: WorkflowService) -> NewWorkflow:
    """A FlowCtl POST body with every optional field, through the surface's parser."""
    body = WorkflowIn.model_validate(
        {
            "name": "diamond ✓",
            "description": "every field set",
            "config": {
                "max_concurrency": 1000,
                "timeout": "1h30m",
                "retry_policy": {
                    "max_attempts": 5,
                    "initial_delay": "250ms",
                    "max_delay": 90,
                    "backoff_factor": 1.5,
                },
            },
            "tasks": [
                {
                    "name": "a",
                    "type": "noop",
                    "payload": {"b": [1, 2.5, None, True, {"z": "ü", "a": -3}], "a": {}},
                    "priority": 7,
                    "timeout": "1.5s",
                },
                *(
                    {
                        "name": f"m{i}",
                        "type": "noop",
                        "dependencies": ["a"],
                        "payload": {"from_a": "${a.output}", "i": i},
                        "max_retries": i,
                    }
                    for i in range(8)
                ),
                {
                    "name": "z",
                    "type": "noop",
                    "dependencies": [f"m{i}" for i in range(8)],
                    "timeout": 30,
                    "priority": -2,
                },
            ],
        }
    )
    return to_new_workflow(body, service)


def direct_workflow() -> NewWorkflow:
    """A caller of the service with the fields no surface sets, ints for floats."""
    graph = compile_tasks(
        [
            StepSpec(name="first", type="noop", payload={"k": [1, "two"]}, timeout=5),
            StepSpec(name="second", type="noop", dependencies=("first",), agent="helper"),
        ]
    )
    return NewWorkflow(
        name="direct",
        kind="tasks",
        graph=graph,
        settings=RunSettings(
            max_concurrency=3, timeout=None, retry=RetryPolicy(max_retries=0, initial_delay=2)
        ),
        input={"n": 1, "list": [1.25, "x"]},
        config={"echo": True},
        label="1.0.0",
        tags=["t1"],
        source={"written": "as is"},
        triggered_by="test",
        run_id="fixed-run-id",
    )


def test_submit_returns_the_rows_get_run_reads_back(url):
    service = WorkflowService(None, default_registry(), Wakeups(), Settings())  # type: ignore[arg-type]
    workflows = [flowctl_workflow(service), direct_workflow()]
    asyncio.run(submit_and_read(url, workflows))


def test_runs_and_steps_have_no_column_defaults():
    # `created_rows` fills every column the insert leaves out with None; a
    # default here would make that wrong.
    for table in (schema.runs, schema.step_runs):
        for column in table.c:
            assert column.default is None and column.server_default is None, column
