"""Reusable, versioned definitions written as `start_step` + `steps` (agent
workflows): create, read, update (a structural change is a new version),
soft delete, versions, and the listing `GET /api/v1/workflows` shares with
FlowCtl workflows.

Each step becomes a graph step of type `agent` that calls `agent_name` with
`input_mapping` as its input. Validation, all problems at once:

- 422: field errors (the API's model), a step id that is not a valid step name,
  too many steps;
- 400: a `steps` key that differs from its step's `id`, an unknown
  `start_step` or `next_step`, a `next_step` cycle, a step not reachable from
  `start_step`, an `input_mapping` reference to a step that does not run
  before, an agent that does not exist or is not active, a name already used by
  another definition that is not deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from flowctl.config import Settings
from flowctl.domain.graph import (
    STEP_NAME,
    STEP_NAME_RULE,
    DefinitionInvalid,
    FieldError,
    StepSpec,
    WorkflowGraph,
    compile_linked_steps,
)
from flowctl.domain.runsettings import RunSettings
from flowctl.domain.states import RunStatus
from flowctl.engine.agents import AgentService
from flowctl.engine.errors import InvalidInput, NotFound, ServiceError, call_store
from flowctl.engine.service import WorkflowService, new_id
from flowctl.executors.base import ExecutorRegistry
from flowctl.store import agents as agent_store
from flowctl.store import definitions as store
from flowctl.store import runs as run_store
from flowctl.store.database import Database
from flowctl.store.definitions import WorkflowListFilter

KIND = "steps"  # definitions.kind of this syntax
FLOWCTL_KIND = "tasks"  # FlowCtl's one-shot workflows
AGENT_STEP_TYPE = "agent"
DEFINITION_STATUSES = ("active", "inactive", "deleted")
RUN_STATUSES = tuple(s.value for s in RunStatus)
SORT_FIELDS = ("name", "created_at", "updated_at", "version")


class NotExecutable(ServiceError):
    """The definition exists but may not start a run (inactive or deleted)."""

    status_code = 400


class WrongKind(ServiceError):
    """The id names a FlowCtl workflow, which is one-shot: no updates, deletes
    or versions (its run is cancelled with PUT .../cancel)."""

    status_code = 400

    def __init__(self, definition_id: str):
        super().__init__(
            f"Workflow '{definition_id}' is a FlowCtl workflow (created from `tasks`); only "
            "definitions created from `start_step` and `steps` can be updated, deleted or "
            "versioned"
        )


@dataclass(frozen=True, slots=True)
class LinkedStep:
    id: str
    agent_name: str
    input_mapping: Any
    next_step: str | None = None


@dataclass(frozen=True, slots=True)
class StepsData:
    """`start_step` + `steps` as the client wrote them (keyed by step id)."""

    start_step: str
    steps: Mapping[str, LinkedStep]

    def source(self) -> dict[str, Any]:
        """The normalised form that is stored, compared and shown as `workflow_data`."""
        return {
            "start_step": self.start_step,
            "steps": {
                key: {
                    "id": step.id,
                    "agent_name": step.agent_name,
                    "next_step": step.next_step,
                    "input_mapping": step.input_mapping,
                }
                for key, step in self.steps.items()
            },
        }

    @classmethod
    def from_source(cls, source: Mapping[str, Any]) -> StepsData:
        return cls(
            start_step=source["start_step"],
            steps={
                key: LinkedStep(
                    id=s["id"],
                    agent_name=s["agent_name"],
                    input_mapping=s["input_mapping"],
                    next_step=s.get("next_step"),
                )
                for key, s in source["steps"].items()
            },
        )


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class DefinitionChanges:
    """A partial update: fields left `_UNSET` keep their value."""

    name: Any = _UNSET
    description: Any = _UNSET
    start_step: Any = _UNSET
    steps: Any = _UNSET  # Mapping[str, LinkedStep]
    status: Any = _UNSET  # active | inactive


UNSET = _UNSET


@dataclass(frozen=True, slots=True)
class VersionsPage:
    items: list[dict[str, Any]]  # rows shaped like a definition, newest first
    total: int


class DefinitionService:
    def __init__(self, db: Database, registry: ExecutorRegistry, settings: Settings):
        self.db = db
        self.registry = registry
        self.settings = settings

    @classmethod
    def for_workflows(cls, service: WorkflowService) -> DefinitionService:
        return cls(service.db, service.registry, service.settings)

    async def _call(self, fn, *args, write: bool = False, **kwargs):
        return await call_store(self.db, fn, *args, write=write, **kwargs)

    # --- validation ---------------------------------------------------------

    @property
    def known_types(self) -> frozenset[str]:
        # `agent` steps are valid in a definition whether or not this process
        # runs an agent executor.
        return self.registry.type_names | {AGENT_STEP_TYPE}

    def check_fields(self, data: StepsData) -> None:
        """Problems with single fields (422), before the structure is looked at."""
        errors: list[FieldError] = []
        if not data.steps:
            errors.append(FieldError("steps", "a workflow needs at least one step", "too_short"))
        limit = self.settings.max_steps_per_workflow
        if len(data.steps) > limit:
            errors.append(FieldError("steps", f"at most {limit} steps", "too_long"))
        for key in data.steps:
            if not STEP_NAME.fullmatch(key):
                errors.append(
                    FieldError(f"steps.{key}", f"invalid step id {key!r}: {STEP_NAME_RULE}")
                )
        if AGENT_STEP_TYPE in self.registry:
            executor = self.registry.get(AGENT_STEP_TYPE)
            for key, step in data.steps.items():
                errors.extend(
                    executor.validate_payload(step.input_mapping, f"steps.{key}.input_mapping")
                )
        if errors:
            raise InvalidInput(errors, status_code=422)

    def structure_errors(self, data: StepsData) -> tuple[WorkflowGraph | None, list[FieldError]]:
        """Compile `data`; the graph, or the problems that make it unable to run."""
        errors = [
            FieldError(
                f"steps.{key}.id",
                f"step id '{step.id}' differs from its key '{key}' in `steps`",
                "id_mismatch",
            )
            for key, step in data.steps.items()
            if step.id != key
        ]
        if errors:
            return None, errors
        specs = {
            key: StepSpec(
                name=key, type=AGENT_STEP_TYPE, payload=step.input_mapping, agent=step.agent_name
            )
            for key, step in data.steps.items()
        }
        next_steps = {key: step.next_step for key, step in data.steps.items()}
        try:
            graph = compile_linked_steps(
                data.start_step, specs, next_steps, known_types=self.known_types
            )
        except DefinitionInvalid as exc:
            return None, exc.errors
        return graph, []

    @staticmethod
    def agent_errors(conn: Connection, data: StepsData) -> list[FieldError]:
        names = {step.agent_name for step in data.steps.values()}
        active = agent_store.active_agent_names(conn, names)
        return [
            FieldError(
                f"steps.{key}.agent_name",
                f"Agent '{step.agent_name}' not found or inactive",
                "agent_unavailable",
            )
            for key, step in data.steps.items()
            if step.agent_name not in active
        ]

    @staticmethod
    def name_errors(
        conn: Connection, name: str, *, exclude_id: str | None = None
    ) -> list[FieldError]:
        store.lock_name(conn, KIND, name)
        if store.name_taken(conn, KIND, name, exclude_id=exclude_id):
            return [FieldError("name", f"Workflow name '{name}' already exists", "duplicate")]
        return []

    # --- commands -----------------------------------------------------------

    async def create(self, name: str, description: str | None, data: StepsData) -> dict[str, Any]:
        """Store a new definition, version 1, active. Returns its row."""
        self.check_fields(data)
        graph, errors = self.structure_errors(data)
        row = {
            "id": new_id(),
            "name": name,
            "description": description,
            "kind": KIND,
            "status": "active",
            "version": 1,
            "source": data.source(),
            "graph": graph.to_list() if graph else [],
            "config": {},
        }

        def create(conn: Connection) -> dict[str, Any]:
            problems = errors + self.agent_errors(conn, data) + self.name_errors(conn, name)
            if problems:
                raise InvalidInput(problems, status_code=400)
            return store.insert_definition(conn, row)

        return await self._call(create, write=True)

    async def update(self, definition_id: str, changes: DefinitionChanges) -> dict[str, Any]:
        """Apply a partial update. A change of `start_step` or `steps` (compared
        in normalised form) is a new version: the current one is kept first."""
        if changes.steps is not UNSET:
            self.check_fields(StepsData("", changes.steps))

        def update(conn: Connection) -> dict[str, Any]:
            current = self._get_row(conn, definition_id, for_update=True)
            if current["status"] == "deleted":
                raise ServiceError(
                    f"Workflow '{definition_id}' is deleted and can no longer be updated"
                )
            values: dict[str, Any] = {}
            errors: list[FieldError] = []
            if changes.name is not UNSET and changes.name != current["name"]:
                errors += self.name_errors(conn, changes.name, exclude_id=definition_id)
                values["name"] = changes.name
            if changes.description is not UNSET and changes.description != current["description"]:
                values["description"] = changes.description
            if changes.status is not UNSET and changes.status != current["status"]:
                values["status"] = changes.status
            before = StepsData.from_source(current["source"])
            after = StepsData(
                start_step=before.start_step if changes.start_step is UNSET else changes.start_step,
                steps=before.steps if changes.steps is UNSET else changes.steps,
            )
            source = after.source()
            structural = source != current["source"]
            if structural:
                graph, structure = self.structure_errors(after)
                errors += structure + self.agent_errors(conn, after)
                if graph is not None:
                    values.update(
                        source=source, graph=graph.to_list(), version=current["version"] + 1
                    )
            if errors:
                raise InvalidInput(errors, status_code=400)
            if not values:
                return current
            return store.update_definition(
                conn, current, values, snapshot_id=new_id() if structural else None
            )

        return await self._call(update, write=True)

    async def delete(self, definition_id: str) -> None:
        """Soft delete: the definition stays readable with status `deleted`, can
        start no run, and its name is free again. Deleting it again changes nothing."""

        def delete(conn: Connection) -> None:
            current = self._get_row(conn, definition_id, for_update=True)
            if current["status"] != "deleted":
                store.update_definition(conn, current, {"status": "deleted"})

        await self._call(delete, write=True)

    # --- reads --------------------------------------------------------------

    def _get_row(
        self, conn: Connection, definition_id: str, *, for_update: bool = False
    ) -> dict[str, Any]:
        row = store.get_definition(conn, definition_id, for_update=for_update)
        if row is None:
            raise NotFound("Workflow", definition_id)
        if row["kind"] == FLOWCTL_KIND:
            raise WrongKind(definition_id)
        if row["kind"] != KIND:
            raise NotFound("Workflow", definition_id)
        return row

    async def get(self, definition_id: str) -> dict[str, Any]:
        return await self._call(self._get_row, definition_id)

    async def lookup(self, workflow_id: str) -> tuple[str, Any]:
        """What `GET /api/v1/workflows/{id}` names: `("definition", row)` for a
        definition of this syntax, else `("run", (run, steps))` for a run (a
        FlowCtl workflow). NotFound otherwise."""

        def lookup(conn: Connection) -> tuple[str, Any] | None:
            found = run_store.get_run_with_steps(conn, workflow_id)
            if found is not None and found[0]["kind"] != KIND:
                return "run", found
            row = store.get_definition(conn, workflow_id)
            if row is not None and row["kind"] == KIND:
                return "definition", row
            return ("run", found) if found is not None else None

        result = await self._call(lookup)
        if result is None:
            raise NotFound("Workflow", workflow_id)
        return result

    async def versions(self, workflow_id: str, *, page: int, page_size: int) -> VersionsPage:
        """Every version, the current one included, newest first. `workflow_id`
        may name the definition or any of its earlier versions."""

        def versions(conn: Connection) -> VersionsPage:
            definition_id = workflow_id
            if store.get_definition(conn, workflow_id) is None:
                definition_id = store.definition_of_version(conn, workflow_id) or workflow_id
            current = self._get_row(conn, definition_id)
            offset = (page - 1) * page_size
            items: list[dict[str, Any]] = []
            if offset == 0:
                started = store.current_version_started(conn, current)
                items.append({**current, "created_at": started})
                earlier, count = store.list_versions(
                    conn, definition_id, offset=0, limit=page_size - 1
                )
            else:
                earlier, count = store.list_versions(
                    conn, definition_id, offset=offset - 1, limit=page_size
                )
            return VersionsPage(items + earlier, count + 1)

        return await self._call(versions)

    async def get_executable(self, definition_id: str) -> dict[str, Any]:
        """The definition's row (current version: `graph`, `version`, `source`...)
        if it may start a run, as `WorkflowService.start` takes it. NotFound if
        unknown; NotExecutable (400) if inactive or deleted; WrongKind (400) for a
        FlowCtl workflow."""
        row = await self.get(definition_id)
        if row["status"] != "active":
            raise NotExecutable(
                f"Workflow '{definition_id}' is {row['status']} and cannot be executed"
            )
        return row

    async def execute(
        self,
        definition_id: str,
        input_data: dict[str, Any],
        *,
        workflows: WorkflowService,
        agents: AgentService,
        triggered_by: str = "system",
    ) -> dict[str, Any]:
        """Start a run of the definition's current version; returns the run as
        inserted (pending). Refused as `get_executable` says."""
        definition = await self.get_executable(definition_id)
        # Each agent step retries as its agent's retry_config says (PRODUCT.md:
        # the step, the definition's retry_policy, then the agent's retry_config).
        names = {step["agent"] for step in definition["graph"] if step.get("agent")}
        resolved = await agents.resolve(names)
        step_policies = {
            step["name"]: resolved[step["agent"]].retry_policy()
            for step in definition["graph"]
            if step.get("agent") in resolved
        }
        run, _ = await workflows.start(
            definition,
            input=input_data,
            settings=RunSettings(),
            triggered_by=triggered_by,
            step_policies=step_policies,
        )
        return run

    async def list_workflows(
        self,
        *,
        status: str | None,
        name: str | None,
        sort_by: str,
        descending: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """Definitions and FlowCtl workflows in one listing. A definition status
        lists definitions only, a run status FlowCtl workflows only; without a
        status, both (deleted definitions left out)."""
        definition_statuses: Sequence[str] | None
        run_statuses: Sequence[str] | None
        if status is None:
            definition_statuses, run_statuses = ["active", "inactive"], None
        elif status in DEFINITION_STATUSES:
            definition_statuses, run_statuses = [status], []
        else:
            definition_statuses, run_statuses = [], [status]
        flt = WorkflowListFilter(
            definition_kind=KIND,
            run_kind=FLOWCTL_KIND,
            definition_statuses=definition_statuses,
            run_statuses=run_statuses,
            name=name,
            sort_by=sort_by,
            descending=descending,
            offset=offset,
            limit=limit,
        )
        return await self._call(store.list_workflows, flt)
