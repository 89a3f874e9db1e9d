"""The operations every API surface shares: submit, read, list and cancel runs.

Surfaces parse their request shape into these calls and render what comes back;
no surface touches the store directly, so a rule lives here once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowctl.config import Settings
from flowctl.domain.backoff import RetryPolicy
from flowctl.domain.graph import DefinitionInvalid, FieldError, StepSpec, WorkflowGraph
from flowctl.domain.runsettings import RunSettings
from flowctl.domain.states import RunStatus, StepStatus
from flowctl.domain.templates import has_references
from flowctl.engine.errors import Conflict, InvalidInput, NotFound, call_store
from flowctl.engine.wakeups import Wakeups
from flowctl.executors.base import ExecutorRegistry
from flowctl.store import events, queue, runs, workers
from flowctl.store.database import Database
from flowctl.store.runs import RunFilter


@dataclass(slots=True)
class NewWorkflow:
    """A definition to store and run at once (FlowCtl, PyTaskFlow style)."""

    name: str
    kind: str  # the syntax it came in: tasks | steps | flow
    graph: WorkflowGraph
    settings: RunSettings
    description: str | None = None
    input: Any = None
    config: dict[str, Any] = field(default_factory=dict)  # echoed back as written
    label: str | None = None
    tags: list[str] | None = None
    source: Any = None
    triggered_by: str | None = None
    run_id: str | None = None


def new_id() -> str:
    return str(uuid.uuid4())


def new_ids(n: int) -> list[str]:
    """`n` ids like `new_id()` (random version 4 UUIDs) at a third of the cost:
    one urandom call for all of them and no UUID objects (a run's steps)."""
    raw = os.urandom(16 * n)
    ids = []
    for i in range(0, 16 * n, 16):
        b = bytearray(raw[i : i + 16])
        b[6] = b[6] & 0x0F | 0x40  # version 4
        b[8] = b[8] & 0x3F | 0x80  # the RFC 4122 variant
        h = b.hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


class WorkflowService:
    def __init__(
        self, db: Database, registry: ExecutorRegistry, wakeups: Wakeups, settings: Settings
    ):
        self.db = db
        self.registry = registry
        self.wakeups = wakeups
        self.settings = settings

    async def _call(self, fn, *args, write: bool = False, **kwargs):
        return await call_store(self.db, fn, *args, write=write, **kwargs)

    # --- definitions --------------------------------------------------------

    def check_steps(self, specs: Sequence[StepSpec]) -> None:
        """Limits and executor payload checks the graph itself cannot know."""
        if len(specs) > self.settings.max_steps_per_workflow:
            raise InvalidInput(
                [FieldError("tasks", f"at most {self.settings.max_steps_per_workflow} steps")]
            )
        errors: list[FieldError] = []
        for spec in specs:
            if spec.type in self.registry:
                errors.extend(
                    self.registry.get(spec.type).validate_payload(
                        spec.payload, f"{spec.loc}.payload"
                    )
                )
        if errors:
            raise InvalidInput(errors, status_code=422)

    def compile(self, build) -> WorkflowGraph:
        """Run a graph compiler with this server's step types; 400 on a bad graph."""
        try:
            return build(known_types=self.registry.type_names)
        except DefinitionInvalid as exc:
            raise InvalidInput(exc.errors, status_code=400) from None

    # --- runs ---------------------------------------------------------------

    async def submit(self, wf: NewWorkflow) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Store a one-shot definition and its run in one transaction; queue it.

        Returns the run and its steps as `get_run` would read them right after
        the insert (pending), built from what was inserted.
        """
        run_id = wf.run_id or new_id()
        definition = {
            "id": run_id,
            "name": wf.name,
            "description": wf.description,
            "kind": wf.kind,
            "status": "active",
            "version": 1,
            "label": wf.label,
            "source": wf.source,
            "graph": wf.graph.to_list(),
            "config": wf.config,
            "tags": wf.tags,
        }
        run = self._run_row(run_id, run_id, 1, wf)
        steps = self._step_rows(run_id, wf.graph, wf.settings)
        now = await self._call(runs.create_run, run, steps, definition, write=True)
        self.wakeups.work_ready()
        # The run as inserted, pending, without a second transaction to read it
        # back. (A worker may have claimed a step since; a GET shows that.)
        return runs.created_rows(run, steps, now)

    async def start(
        self,
        definition: Mapping[str, Any],
        *,
        input: Any,
        settings: RunSettings,
        triggered_by: str | None = None,
        step_policies: Mapping[str, RetryPolicy] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Start a run of a stored definition (its current version) with `input`.

        The run and its first ready steps are written in one transaction; the
        result is the run as inserted (pending)."""
        graph = WorkflowGraph.from_list(definition["graph"])
        wf = NewWorkflow(
            name=definition["name"],
            kind=definition["kind"],
            graph=graph,
            settings=settings,
            description=definition.get("description"),
            input=input,
            config=definition.get("config") or {},
            triggered_by=triggered_by,
        )
        run_id = new_id()
        run = self._run_row(run_id, definition["id"], definition["version"], wf)
        steps = self._step_rows(run_id, graph, settings, step_policies)
        now = await self._call(runs.create_run, run, steps, None, write=True)
        self.wakeups.work_ready()
        return runs.created_rows(run, steps, now)

    def _run_row(self, run_id: str, definition_id: str, version: int, wf: NewWorkflow) -> dict:
        return {
            "id": run_id,
            "definition_id": definition_id,
            "definition_version": version,
            "kind": wf.kind,
            "name": wf.name,
            "description": wf.description,
            "status": RunStatus.PENDING.value,
            "input": wf.input,
            "config": wf.config,
            "max_concurrency": wf.settings.max_concurrency,
            "timeout_s": wf.settings.timeout,
            "triggered_by": wf.triggered_by,
        }

    def _step_rows(
        self,
        run_id: str,
        graph: WorkflowGraph,
        settings: RunSettings,
        step_policies: Mapping[str, RetryPolicy] | None = None,
    ) -> list[dict[str, Any]]:
        """One row per step. `step_policies` overrides the run's retry policy for
        some steps (an agent step retries as its agent's retry_config says)."""
        default_policy = settings.step_retry_policy()
        rows = []
        ids = new_ids(len(graph.steps))
        for seq, spec in enumerate(graph.steps):
            own = (step_policies or {}).get(spec.name)
            policy = default_policy if own is None else RunSettings(retry=own).step_retry_policy()
            default_retries = settings.retry.max_retries if own is None else own.max_retries
            rows.append(
                {
                    "id": ids[seq],
                    "run_id": run_id,
                    "seq": seq,
                    "name": spec.name,
                    "type": spec.type,
                    "agent": spec.agent,
                    "status": StepStatus.PENDING.value,
                    "priority": spec.priority,
                    "payload": spec.payload,
                    "has_templates": int(has_references(spec.payload)),
                    "dependencies": list(spec.dependencies),
                    "dependents": list(graph.dependents[spec.name]),
                    "deps_remaining": len(spec.dependencies),
                    "max_retries": (
                        spec.max_retries if spec.max_retries is not None else default_retries
                    ),
                    "retry_count": 0,
                    "retry_policy": policy,
                    "timeout_s": spec.timeout,
                    "lease_epoch": 0,
                }
            )
        return rows

    async def get_run(
        self, run_id: str, *, resource: str = "Workflow"
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        found = await self._call(runs.get_run_with_steps, run_id)
        if found is None:
            raise NotFound(resource, run_id)
        return found

    async def run_events(
        self,
        run_id: str,
        *,
        levels: list[str] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """A run's events in order (its log); NotFound for an unknown run."""
        if await self._call(runs.get_run, run_id) is None:
            raise NotFound("Run", run_id)
        return await self._call(
            events.list_run_events, run_id, levels=levels, offset=offset, limit=limit
        )

    async def get_step(self, step_id: str) -> dict[str, Any]:
        step = await self._call(runs.get_step, step_id)
        if step is None:
            raise NotFound("Task", step_id)
        return step

    async def list_runs(
        self, flt: RunFilter, *, include_steps: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        return await self._call(runs.list_runs, flt, include_steps=include_steps)

    async def cancel(
        self,
        run_id: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        resource: str = "Workflow",
    ) -> None:
        """Cancel a pending or running run. NotFound, or Conflict if it already ended."""
        result = await self._call(runs.cancel_run, run_id, by=by, reason=reason, write=True)
        if not result.found:
            raise NotFound(resource, run_id)
        if not result.cancelled:
            raise Conflict(
                f"{resource} is already {result.status}; only pending or running "
                f"{resource.lower()}s can be cancelled"
            )
        # Stop its steps running in this process now; other processes hear NOTIFY.
        self.wakeups.runs_cancelled([run_id])

    async def retry(self, run_id: str, *, by: str | None = None) -> runs.RetryResult:
        """Resume a failed or cancelled run: the result names the steps that will
        run again and holds the run as the retry left it (pending, whatever a
        worker does next). NotFound, or Conflict if it is not failed or cancelled."""
        result = await self._call(runs.retry_run, run_id, by=by, write=True)
        if not result.found:
            raise NotFound("Run", run_id)
        if not result.retried:
            raise Conflict(f"Run is {result.status}; only failed or cancelled runs can be retried")
        self.wakeups.work_ready()
        return result

    # --- system -------------------------------------------------------------

    async def status_counts(self) -> dict[str, dict[str, int]]:
        return await self._call(runs.count_by_status)

    async def queue_depth(self) -> int:
        return await self._call(queue.queue_depth)

    async def live_workers(self) -> list[dict[str, Any]]:
        return await self._call(
            workers.live_workers, stale_after=max(3 * self.settings.heartbeat_interval, 5.0)
        )
