"""Agent-workflow definitions (specs/workflow-management-api.md, "Workflow
Management"), and the `/api/v1/workflows` routes they share with FlowCtl.

`POST /api/v1/workflows`, `GET /api/v1/workflows` and `GET /api/v1/workflows/{id}`
serve two specs (PRODUCT.md, "Where the specs collide"). They live here, in one
router, and each decides in one place which surface a request belongs to:

- create: a body with `tasks` is a FlowCtl workflow (`flowctl.py` parses and
  renders it), a body with `start_step`/`steps` a definition; both or neither
  is a 422 that explains the two shapes;
- get: a definition of this syntax renders in this spec's shape, anything
  else as before (a FlowCtl workflow);
- list: a definition status lists definitions, a run status FlowCtl workflows,
  no status both; each item in its own shape.

PUT, DELETE and `/versions` are definitions only; on a FlowCtl workflow they
are a 400 (FlowCtl workflows are one-shot; `PUT .../cancel` stops one).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from flowctl.api import flowctl as flowctl_surface
from flowctl.api import schemas as doc
from flowctl.api.body import parse_model, read_body, read_model
from flowctl.api.errors import ApiError
from flowctl.api.render import JSONBody, iso, page_keys
from flowctl.domain.graph import FieldError
from flowctl.engine.definitions import (
    DEFINITION_STATUSES,
    UNSET,
    DefinitionChanges,
    DefinitionService,
    LinkedStep,
    StepsData,
)
from flowctl.engine.service import WorkflowService

AnyStatus = Literal[
    "active", "inactive", "deleted", "pending", "running", "completed", "failed", "cancelled"
]
SortField = Literal["name", "created_at", "updated_at", "version"]

# List sizes: this spec's `page_size` (default 20) or FlowCtl's `limit` (default
# 10, used when the request filters by a FlowCtl status).
DEFAULT_PAGE_SIZE = 20
FLOWCTL_DEFAULT_LIMIT = 10


class _Strict(BaseModel):
    # As on the FlowCtl surface: JSON types are not coerced, unknown fields are errors.
    model_config = ConfigDict(strict=True, extra="forbid")


class StepIn(_Strict):
    id: str = Field(min_length=1, max_length=128, description="the step's key in `steps`")
    agent_name: str = Field(min_length=1, max_length=255)
    next_step: str | None = Field(None, min_length=1, max_length=128)
    input_mapping: dict[str, Any] = Field(
        description="values, or `${workflow.input.x}` / `${<earlier step>.output.y}`"
    )


class AgentWorkflowIn(_Strict):
    name: str = Field(min_length=1, max_length=255, description="unique among live workflows")
    description: str | None = Field(None, max_length=10_000)
    start_step: str = Field(min_length=1, max_length=128)
    steps: dict[str, StepIn] = Field(min_length=1)


class AgentWorkflowUpdate(_Strict):
    """Every field optional; a field left out keeps its value."""

    name: str = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    start_step: str = Field(None, min_length=1, max_length=128)
    steps: dict[str, StepIn] = Field(None, min_length=1)
    status: Literal["active", "inactive"] = Field(None, description="DELETE deletes")


def steps_data(start_step: str, steps: dict[str, StepIn]) -> StepsData:
    return StepsData(start_step=start_step, steps=linked_steps(steps))


def linked_steps(steps: dict[str, StepIn]) -> dict[str, LinkedStep]:
    return {
        key: LinkedStep(
            id=s.id, agent_name=s.agent_name, input_mapping=s.input_mapping, next_step=s.next_step
        )
        for key, s in steps.items()
    }


_SHAPES = (
    "send either `tasks` (a FlowCtl workflow, queued at once) or `start_step` and "
    "`steps` (a reusable agent-workflow definition)"
)


def body_shape(value: Any) -> Literal["tasks", "steps"]:
    """Which spec a create body belongs to: the one place that decides."""
    if not isinstance(value, dict):
        raise ApiError(
            422,
            f"Validation failed: the body must be a JSON object: {_SHAPES}",
            [FieldError("body", f"expected a JSON object: {_SHAPES}", "dict_type")],
        )
    has_tasks = "tasks" in value
    has_steps = "start_step" in value or "steps" in value
    if has_tasks != has_steps:
        return "tasks" if has_tasks else "steps"
    problem = "has both" if has_tasks else "has neither"
    errors = [
        FieldError(field, f"the body {problem}: {_SHAPES}", "extra" if has_tasks else "missing")
        for field in ("tasks", "steps")
    ]
    raise ApiError(422, f"Validation failed: the body {problem}: {_SHAPES}", errors)


# --- rendering ------------------------------------------------------------------


def workflow_data(row: dict[str, Any]) -> dict[str, Any]:
    """`start_step` and `steps` as written, steps in the order they were written
    (the compiled graph keeps it; a JSONB `steps` object does not)."""
    source = row["source"]
    steps = source["steps"]
    order = [s["name"] for s in row["graph"] if s["name"] in steps] or list(steps)
    return {"start_step": source["start_step"], "steps": {key: steps[key] for key in order}}


def render_definition(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "version": row["version"],
        "workflow_data": workflow_data(row),
        "status": row["status"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


# --- routes ---------------------------------------------------------------------


def build_router(service: WorkflowService) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["Workflows"])
    definitions = DefinitionService.for_workflows(service)
    settings = service.settings

    @router.post(
        "/workflows",
        status_code=201,
        summary="Create a workflow and queue it (tasks), or a reusable definition (steps)",
        description="A body with `tasks` creates a FlowCtl workflow and queues it at once; "
        "a body with `start_step` and `steps` creates a reusable, versioned agent-workflow "
        "definition (status `active`, version 1) that runs when executed. Both or neither "
        "is a 422.",
        openapi_extra=doc.request_body(
            flowctl_surface.WorkflowIn,
            AgentWorkflowIn,
            examples={
                "flowctl": (
                    "A FlowCtl workflow (tasks), queued at once",
                    doc.FLOWCTL_CREATE_EXAMPLE,
                ),
                "agent_workflow": (
                    "An agent-workflow definition (start_step + steps)",
                    doc.AGENT_WORKFLOW_CREATE_EXAMPLE,
                ),
            },
        ),
        responses=doc.responses(
            201,
            doc.Workflow | doc.WorkflowDefinition,
            "Created: a FlowCtl workflow (from `tasks`) or a definition (from `steps`)",
            examples={
                "flowctl": ("A FlowCtl workflow, queued", doc.WORKFLOW_CREATED_EXAMPLE),
                "agent_workflow": ("An agent-workflow definition", doc.DEFINITION_EXAMPLE),
            },
            errors={
                400: "The body is not valid JSON, or the workflow cannot run as written "
                "(unknown or inactive agent, cycle, unreachable step, duplicate name...): "
                "each problem is listed in `errors`",
                413: None,
                422: "Validation failed (both or neither shape, wrong types, ranges): "
                "each offending field is listed in `errors`",
                503: None,
            },
        ),
    )
    async def create_workflow(request: Request):
        value = await read_body(request, settings)
        if body_shape(value) == "tasks":
            body = parse_model(flowctl_surface.WorkflowIn, value)
            run, steps = await service.submit(flowctl_surface.to_new_workflow(body, service))
            return JSONBody(flowctl_surface.render_workflow(run, steps), status_code=201)
        agent_body = parse_model(AgentWorkflowIn, value)
        row = await definitions.create(
            agent_body.name,
            agent_body.description,
            steps_data(agent_body.start_step, agent_body.steps),
        )
        return JSONBody(render_definition(row), status_code=201)

    @router.get(
        "/workflows",
        summary="List workflows",
        description="Definitions (status active|inactive|deleted) and FlowCtl workflows "
        "(pending|running|completed|failed|cancelled) in one list, each in its own shape. "
        "A status filters to its kind; without one, both are listed (deleted definitions "
        "left out). Carries both pagination vocabularies.",
        responses=doc.responses(
            200,
            doc.WorkflowList,
            "One page of workflows, under both `workflows` and `items`",
            example=doc.page("workflows", [doc.DEFINITION_EXAMPLE, doc.WORKFLOW_RUNNING_EXAMPLE]),
            errors={422: None, 503: None},
        ),
    )
    async def list_workflows(
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int | None = Query(None, ge=1, le=100, description="default 20"),
        limit: int | None = Query(None, ge=1, le=100, description="FlowCtl's page_size"),
        status: AnyStatus | None = Query(None),
        name: str | None = Query(None, min_length=1, max_length=255, description="exact"),
        sort_by: SortField = Query("created_at"),
        sort_order: Literal["asc", "desc"] = Query("desc"),
    ):
        if page_size is not None and limit is not None and page_size != limit:
            raise ApiError(
                422,
                "Validation failed: page_size and limit are the same setting; give one",
                [FieldError("page_size", "differs from limit", "value_error")],
            )
        size = page_size or limit
        if size is None:
            size = (
                DEFAULT_PAGE_SIZE
                if status is None or status in DEFINITION_STATUSES
                else FLOWCTL_DEFAULT_LIMIT
            )
        entries, total = await definitions.list_workflows(
            status=status,
            name=name,
            sort_by=sort_by,
            descending=sort_order == "desc",
            offset=(page - 1) * size,
            limit=size,
        )
        items = [
            render_definition(row)
            if source == "definition"
            else flowctl_surface.render_workflow(row, row.pop("steps"))
            for source, row in entries
        ]
        return JSONBody(page_keys("workflows", items, total, page, size))

    @router.get(
        "/workflows/{workflow_id}",
        summary="Get a workflow",
        responses=doc.responses(
            200,
            doc.Workflow | doc.WorkflowDefinition,
            "A FlowCtl workflow or an agent-workflow definition, each in its own shape",
            examples={
                "flowctl": ("A FlowCtl workflow", doc.WORKFLOW_RUNNING_EXAMPLE),
                "agent_workflow": ("An agent-workflow definition", doc.DEFINITION_EXAMPLE),
            },
            errors={404: "No workflow has this id", 503: None},
        ),
    )
    async def get_workflow(workflow_id: str):
        kind, found = await definitions.lookup(workflow_id)
        if kind == "definition":
            return JSONBody(render_definition(found))
        return JSONBody(flowctl_surface.render_workflow(*found))

    @router.put(
        "/workflows/{workflow_id}",
        summary="Update a workflow definition",
        description="Partial update. A change of `start_step` or `steps` is a new version "
        "(the previous one stays readable under /versions); other fields keep the version.",
        openapi_extra=doc.request_body(
            AgentWorkflowUpdate, examples=doc.DEFINITION_UPDATE_EXAMPLES
        ),
        responses=doc.responses(
            200,
            doc.WorkflowDefinition,
            "The definition as updated",
            example={
                **doc.DEFINITION_EXAMPLE,
                "description": "Updated ETL pipeline with validation",
                "updated_at": doc.T5,
            },
            errors={
                400: "The body is not valid JSON, the definition is deleted or a FlowCtl "
                "workflow, or the new steps cannot run as written (each problem in `errors`)",
                404: "No workflow has this id",
                413: None,
                422: None,
                503: None,
            },
        ),
    )
    async def update_workflow(workflow_id: str, request: Request):
        body = await read_model(request, AgentWorkflowUpdate, settings)
        given = body.model_fields_set
        changes = DefinitionChanges(
            name=body.name if "name" in given else UNSET,
            description=body.description if "description" in given else UNSET,
            start_step=body.start_step if "start_step" in given else UNSET,
            steps=linked_steps(body.steps) if "steps" in given else UNSET,
            status=body.status if "status" in given else UNSET,
        )
        return JSONBody(render_definition(await definitions.update(workflow_id, changes)))

    @router.delete(
        "/workflows/{workflow_id}",
        summary="Delete a workflow definition (soft)",
        responses=doc.responses(
            200,
            doc.Message,
            "Deleted (deleting a deleted definition again changes nothing)",
            example={"message": f"Workflow '{doc.DEFINITION_ID}' deleted successfully"},
            errors={
                400: "The id names a FlowCtl workflow (cancel it instead)",
                404: "No workflow has this id",
                503: None,
            },
        ),
    )
    async def delete_workflow(workflow_id: str):
        await definitions.delete(workflow_id)
        return JSONBody({"message": f"Workflow '{workflow_id}' deleted successfully"})

    @router.get(
        "/workflows/{workflow_id}/versions",
        summary="List a workflow definition's versions, newest first",
        responses=doc.responses(
            200,
            doc.WorkflowVersionList,
            "One page of versions, the current one first",
            example=doc.page(
                "items",
                [
                    {**doc.DEFINITION_EXAMPLE, "version": 2, "created_at": doc.T5},
                    {**doc.DEFINITION_EXAMPLE, "id": doc.DEFINITION_VERSION_ID, "version": 1},
                ],
            ),
            errors={
                400: "The id names a FlowCtl workflow, which has no versions",
                404: "No workflow has this id",
                422: None,
                503: None,
            },
        ),
    )
    async def list_versions(
        workflow_id: str,
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=100),
    ):
        found = await definitions.versions(workflow_id, page=page, page_size=page_size)
        items = [render_definition(row) for row in found.items]
        return JSONBody(page_keys("items", items, found.total, page, page_size))

    return router
