"""What /openapi.json says each route answers: documentation models and examples.

The routes build their bodies as dicts (`render_*` functions) and return them in
a `JSONBody`; FastAPI passes a returned Response through untouched, so nothing
here validates, filters or reorders a response at run time. These models only
describe those bodies, field for field (every field is always present, hence
required; `extra="forbid"` says no other field appears), and
`tests/e2e/test_openapi.py` checks real responses against them.

Routes that read their JSON body themselves (`api/body.py`, for the size and
depth limits) declare it with `request_body(...)`, which refers to the request
model by `$ref`; `add_request_schemas` puts those models (and the models they
use) into `components/schemas` when the document is generated, so no schema
carries inline `$defs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import fastapi.routing
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

REF_PREFIX = "#/components/schemas/"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------


class FieldErrorItem(_Doc):
    field: str = Field(description="where, e.g. `tasks[1].name` or `page`")
    message: str
    type: str = Field(description="the kind of problem, e.g. `missing`, `greater_than_equal`")


class ErrorBody(_Doc):
    """Every 4xx/5xx of these paths (`api/errors.py: error_body`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "error": "Validation failed: page: Input should be greater than or equal to 1",
                    "detail": "Validation failed: page: Input should be greater than or equal to 1",
                    "errors": [
                        {
                            "field": "page",
                            "message": "Input should be greater than or equal to 1",
                            "type": "greater_than_equal",
                        }
                    ],
                    "status_code": 422,
                    "timestamp": "2024-01-01T10:00:00Z",
                    "path": "/api/v1/runs",
                    "request_id": "req-123e4567-e89b-12d3-a456-426614174000",
                }
            ]
        },
    )

    error: str = Field(description="what went wrong, in words")
    detail: str = Field(description="the same message, where FastAPI clients look")
    errors: list[FieldErrorItem] = Field(description="one entry per offending field")
    status_code: int
    timestamp: datetime
    path: str
    request_id: str | None = Field(description="also sent as the X-Request-ID header")


ERROR_TEXT = {
    400: "Bad request: the body is not valid JSON (or empty, or nested too deeply), "
    "or the request cannot be carried out as asked",
    404: "Not found",
    409: "Conflict: the resource is not in a state that allows this",
    413: "The request body is larger than the server's limit",
    422: "Validation failed: each offending field is listed in `errors`",
    503: "The database cannot be reached",
}
DEFAULT_ERROR = "Unexpected error (500): the same error body, never a stack trace"


# --- FlowCtl workflows and tasks --------------------------------------------------

RunState = Literal["pending", "running", "completed", "failed", "cancelled"]
StepState = Literal["pending", "running", "retrying", "completed", "failed", "cancelled", "skipped"]


class Task(_Doc):
    """A FlowCtl task (`api/flowctl.py: render_task`)."""

    id: str
    workflow_id: str
    name: str
    type: str
    status: StepState
    payload: dict[str, Any]
    result: Any = Field(description="the executor's result once completed, else null")
    error: str | None
    retry_count: int
    max_retries: int
    priority: int
    dependencies: list[str]
    timeout: str | None = Field(description="one attempt's timeout, e.g. `30s`; null: none")
    next_attempt_at: datetime | None = Field(description="when a retrying task runs again")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class Workflow(_Doc):
    """A FlowCtl workflow: a one-shot definition and its run (`render_workflow`)."""

    id: str
    name: str
    description: str | None
    status: RunState
    tasks: list[Task]
    config: dict[str, Any] | None = Field(
        description="the effective settings: max_concurrency, timeout, retry_policy"
    )
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class WorkflowTasks(_Doc):
    tasks: list[Task]


class Message(_Doc):
    message: str


# --- agent-workflow definitions ---------------------------------------------------


class DefinitionStep(_Doc):
    id: str
    agent_name: str
    next_step: str | None
    input_mapping: dict[str, Any]


class WorkflowData(_Doc):
    start_step: str
    steps: dict[str, DefinitionStep] = Field(description="in the order they were written")


class WorkflowDefinition(_Doc):
    """An agent-workflow definition (`api/agent_workflows.py: render_definition`)."""

    id: str
    name: str
    description: str | None
    version: int
    workflow_data: WorkflowData
    status: Literal["active", "inactive", "deleted"]
    created_at: datetime
    updated_at: datetime


class _Page(_Doc):
    """Both pagination vocabularies (`api/render.py: page_keys`)."""

    total: int
    page: int
    limit: int = Field(description="the page size (FlowCtl's name)")
    page_size: int = Field(description="the page size")
    total_pages: int


class WorkflowList(_Page):
    """Definitions and FlowCtl workflows, each in its own shape, under both keys."""

    workflows: list[WorkflowDefinition | Workflow]
    items: list[WorkflowDefinition | Workflow] = Field(description="the same list")


class WorkflowVersionList(_Page):
    items: list[WorkflowDefinition] = Field(description="newest version first")


# --- agents -----------------------------------------------------------------------


class AgentRetryConfig(_Doc):
    max_retries: int
    initial_delay_ms: int
    max_delay_ms: int
    backoff_multiplier: float


class Agent(_Doc):
    """An agent (`api/agents.py: render_agent`); `auth_config` values are masked."""

    id: str
    name: str
    url: str
    description: str | None
    auth_type: Literal["none", "bearer", "apikey"]
    auth_config: dict[str, str] | None = Field(description='its keys, each value "****"')
    timeout_ms: int
    retry_config: AgentRetryConfig
    status: Literal["active", "inactive", "deleted"]
    created_at: datetime
    updated_at: datetime


class AgentList(_Page):
    items: list[Agent]


class AgentHealth(_Doc):
    healthy: bool
    status_code: int | None = Field(description="the status of the agent's /health")
    response_time_ms: float | None
    error: str | None = Field(description="why it is not healthy")


# --- runs ---------------------------------------------------------------------------


class Run(_Doc):
    """A run, whichever surface started it (`api/agent_runs.py: render_run`)."""

    id: str
    run_id: str = Field(description="the same as id")
    workflow_id: str
    workflow_name: str
    workflow_definition_id: str
    workflow_version: int
    status: Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    input_data: dict[str, Any]
    triggered_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None = Field(description="null for a cancelled run")
    cancelled_at: datetime | None
    cancelled_by: str | None
    error_message: str | None


class RunList(_Page):
    items: list[Run]


class RunStep(_Doc):
    """A step of a run (`render_step`)."""

    id: str
    run_id: str
    step_id: str
    step_name: str
    agent_name: str | None = Field(description="null for a step that is not an agent call")
    status: Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "SKIPPED"]
    input_data: Any = Field(description="templates resolved once started, else as written")
    output_data: Any
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    retry_count: int
    next_attempt_at: datetime | None = Field(description="set while waiting to retry")


class RunEvent(_Doc):
    """One log event of a run (`render_event`)."""

    id: int
    timestamp: datetime
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    type: str = Field(description="e.g. run.created, step.started, step.retrying")
    step_id: str | None
    step_name: str | None
    message: str | None
    data: dict[str, Any]


class RunLogs(_Page):
    run_id: str
    items: list[RunEvent]


# --- system -------------------------------------------------------------------------


class Health(_Doc):
    status: Literal["healthy"]
    timestamp: datetime
    version: str
    uptime_seconds: float
    services: None


class ApiHealth(_Doc):
    status: Literal["healthy", "unhealthy"]
    timestamp: datetime


class ReadinessCheck(_Doc):
    status: Literal["healthy", "unhealthy", "unknown"]
    message: str
    response_time_ms: float | None


class ReadinessChecks(_Doc):
    database: ReadinessCheck
    workers: ReadinessCheck = Field(description="workers heartbeating and claiming work")


class Readiness(_Doc):
    ready: bool
    timestamp: datetime
    checks: ReadinessChecks


class WorkflowCounts(_Doc):
    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class TaskCounts(_Doc):
    total: int
    pending: int
    running: int
    retrying: int
    completed: int
    failed: int
    cancelled: int
    skipped: int


class WorkerCounts(_Doc):
    active: int
    idle: int
    slots: int
    busy_slots: int


class Metrics(_Doc):
    workflows: WorkflowCounts
    tasks: TaskCounts
    workers: WorkerCounts


# --- declaring a route's responses and body -------------------------------------


def responses(
    status: int,
    model: Any,
    description: str,
    *,
    example: Any = None,
    examples: Mapping[str, tuple[str, Any]] | None = None,
    errors: Mapping[int, str | None] | None = None,
    extra: Mapping[int, dict[str, Any]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its success status with `model` and an example
    (`example`, or `examples` as name -> (summary, value)), each error status with
    the error body (a None description takes the standard one), `default` (500)
    with the error body too, and `extra` entries as they are."""
    media: dict[str, Any] = {}
    if examples:
        media["examples"] = {
            name: {"summary": summary, "value": value}
            for name, (summary, value) in examples.items()
        }
    elif example is not None:
        media["example"] = example
    out: dict[int | str, dict[str, Any]] = {
        status: {"model": model, "description": description, "content": {"application/json": media}}
    }
    for code, text in (errors or {}).items():
        out[code] = {"model": ErrorBody, "description": text or ERROR_TEXT[code]}
    out.update(extra or {})
    out["default"] = {"model": ErrorBody, "description": DEFAULT_ERROR}
    return out


_REQUEST_MODELS: dict[str, type[BaseModel]] = {}


def request_body(
    *models: type[BaseModel],
    examples: Mapping[str, tuple[str, Any]],
    required: bool = True,
    description: str | None = None,
) -> dict[str, Any]:
    """`openapi_extra=` for a route that reads its JSON body itself: the body is
    `models[0]`, or one of `models` (oneOf), referred to by `$ref`."""
    for model in models:
        _REQUEST_MODELS[model.__name__] = model
    refs = [{"$ref": f"{REF_PREFIX}{model.__name__}"} for model in models]
    body: dict[str, Any] = {
        "required": required,
        "content": {
            "application/json": {
                "schema": refs[0] if len(refs) == 1 else {"oneOf": refs},
                "examples": {
                    name: {"summary": summary, "value": value}
                    for name, (summary, value) in examples.items()
                },
            }
        },
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def add_request_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the request models declared with `request_body` (and every model they
    use) to `components/schemas`, in place. A name FastAPI already gave to a
    different schema is an error, not a silent overwrite."""
    if not _REQUEST_MODELS:
        return spec
    pairs = [(model, "validation") for model in _REQUEST_MODELS.values()]
    refs, top = models_json_schema(pairs, ref_template=REF_PREFIX + "{model}")  # type: ignore[arg-type]
    for (model, _), ref in refs.items():
        expected = f"{REF_PREFIX}{model.__name__}"
        if ref.get("$ref") != expected:  # pragma: no cover - a clash of model names
            raise RuntimeError(f"request model {model.__name__} was named {ref}, not {expected}")
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different schemas are both named {name!r}")
        schemas[name] = schema
    spec["components"]["schemas"] = dict(sorted(schemas.items()))
    return spec


# --- examples (from specs/flowctl-api.md and specs/workflow-management-api.md,
# as flowctl answers them) -----------------------------------------------------------

T0 = "2024-01-01T10:00:00Z"
T1 = "2024-01-01T10:01:00Z"
T3 = "2024-01-01T10:03:00Z"
T5 = "2024-01-01T10:05:00Z"
WORKFLOW_ID = "550e8400-e29b-41d4-a716-446655440000"
TASK_IDS = ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b811-9dad-11d1-80b4-00c04fd430c8")
DEFINITION_ID = "456e7890-e89b-12d3-a456-426614174000"
DEFINITION_VERSION_ID = "456e7890-e89b-12d3-a456-426614174001"
AGENT_ID = "123e4567-e89b-12d3-a456-426614174000"
RUN_ID = "789e0123-e89b-12d3-a456-426614174000"
STEP_IDS = ("9b2f0a10-4c1e-4f7a-9d35-2f1c8e6a0b01", "9b2f0a10-4c1e-4f7a-9d35-2f1c8e6a0b02")

FLOWCTL_CREATE_EXAMPLE = {
    "name": "Data Processing",
    "description": "Process daily data files",
    "config": {
        "max_concurrency": 5,
        "timeout": "1h",
        "retry_policy": {"max_attempts": 3, "initial_delay": "1s", "max_delay": "5m"},
    },
    "tasks": [
        {
            "name": "extract_data",
            "type": "generic",
            "payload": {"command": "echo", "args": ["s3://bucket/data.csv"]},
            "priority": 1,
        },
        {
            "name": "validate_data",
            "type": "generic",
            "dependencies": ["extract_data"],
            "payload": {"command": "true"},
            "priority": 2,
        },
    ],
}


def _task(i: int, name: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": TASK_IDS[i],
        "workflow_id": WORKFLOW_ID,
        "name": name,
        "type": "generic",
        "status": "pending",
        "payload": FLOWCTL_CREATE_EXAMPLE["tasks"][i]["payload"],
        "result": None,
        "error": None,
        "retry_count": 0,
        "max_retries": 2,
        "priority": i + 1,
        "dependencies": ["extract_data"] if i else [],
        "timeout": None,
        "next_attempt_at": None,
        "created_at": T0,
        "updated_at": T0,
        "started_at": None,
        "completed_at": None,
    }
    return {**base, **fields}


TASK_EXAMPLE = _task(
    0,
    "extract_data",
    status="completed",
    result={
        "exit_code": 0,
        "stdout": "s3://bucket/data.csv\n",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "duration_ms": 14,
        "json": None,
    },
    updated_at=T1,
    started_at=T0,
    completed_at=T1,
)
WORKFLOW_CONFIG_EXAMPLE = {
    "max_concurrency": 5,
    "timeout": "1h",
    "retry_policy": {
        "max_attempts": 3,
        "initial_delay": "1s",
        "max_delay": "5m",
        "backoff_factor": 2.0,
    },
}
WORKFLOW_CREATED_EXAMPLE = {
    "id": WORKFLOW_ID,
    "name": "Data Processing",
    "description": "Process daily data files",
    "status": "pending",
    "tasks": [_task(0, "extract_data"), _task(1, "validate_data")],
    "config": WORKFLOW_CONFIG_EXAMPLE,
    "error": None,
    "created_at": T0,
    "updated_at": T0,
    "started_at": None,
    "completed_at": None,
}
WORKFLOW_RUNNING_EXAMPLE = {
    **WORKFLOW_CREATED_EXAMPLE,
    "status": "running",
    "tasks": [TASK_EXAMPLE, _task(1, "validate_data", status="running", started_at=T1)],
    "updated_at": T1,
    "started_at": T0,
}

AGENT_WORKFLOW_CREATE_EXAMPLE = {
    "name": "data-processing-pipeline",
    "description": "ETL pipeline for data processing",
    "start_step": "extract",
    "steps": {
        "extract": {
            "id": "extract",
            "agent_name": "DataExtractorAgent",
            "next_step": "transform",
            "input_mapping": {
                "source_url": "${workflow.input.data_source}",
                "format": "${workflow.input.format}",
            },
        },
        "transform": {
            "id": "transform",
            "agent_name": "DataTransformerAgent",
            "next_step": "load",
            "input_mapping": {
                "raw_data": "${extract.output.data}",
                "schema": "${workflow.input.schema}",
            },
        },
        "load": {
            "id": "load",
            "agent_name": "DataLoaderAgent",
            "next_step": None,
            "input_mapping": {
                "transformed_data": "${transform.output.data}",
                "destination": "${workflow.input.destination}",
            },
        },
    },
}
DEFINITION_EXAMPLE = {
    "id": DEFINITION_ID,
    "name": "data-processing-pipeline",
    "description": "ETL pipeline for data processing",
    "version": 1,
    "workflow_data": {
        "start_step": AGENT_WORKFLOW_CREATE_EXAMPLE["start_step"],
        "steps": AGENT_WORKFLOW_CREATE_EXAMPLE["steps"],
    },
    "status": "active",
    "created_at": T0,
    "updated_at": T0,
}
DEFINITION_UPDATE_EXAMPLES = {
    "metadata": (
        "Change the description and status: the version stays",
        {"description": "Updated ETL pipeline with validation", "status": "active"},
    ),
    "new_version": (
        "Change the steps: a new version",
        {
            "start_step": "extract",
            "steps": {
                "extract": {
                    "id": "extract",
                    "agent_name": "DataExtractorAgent",
                    "next_step": None,
                    "input_mapping": {"source_url": "${workflow.input.data_source}"},
                }
            },
        },
    ),
}


def page(key: str, items: list[Any], *, size: int = 20, total: int | None = None) -> dict:
    total = len(items) if total is None else total
    body = {key: items, "total": total, "page": 1, "limit": size, "page_size": size}
    body["total_pages"] = -(-total // size)
    if key != "items":
        body["items"] = items
    return body


AGENT_CREATE_EXAMPLE = {
    "name": "data-processor",
    "url": "http://data-processor:8080",
    "description": "Processes data transformations",
    "auth_type": "bearer",
    "auth_config": {"token": "secret-token-123"},
    "timeout_ms": 30000,
    "retry_config": {
        "max_retries": 3,
        "initial_delay_ms": 1000,
        "max_delay_ms": 30000,
        "backoff_multiplier": 2.0,
    },
}
AGENT_EXAMPLE = {
    "id": AGENT_ID,
    **AGENT_CREATE_EXAMPLE,
    "auth_config": {"token": "****"},
    "status": "active",
    "created_at": T0,
    "updated_at": T0,
}
AGENT_UPDATE_EXAMPLE = {"description": "Updated description", "timeout_ms": 60000}
AGENT_HEALTH_EXAMPLES = {
    "healthy": (
        "The agent answered its /health with a 2xx",
        {"healthy": True, "status_code": 200, "response_time_ms": 45.23, "error": None},
    ),
    "unhealthy": (
        "No answer in time (still a 200)",
        {
            "healthy": False,
            "status_code": None,
            "response_time_ms": None,
            "error": "Connection timeout after 30000ms",
        },
    ),
}

EXECUTE_EXAMPLE = {
    "input_data": {
        "data_source": "https://api.example.com/data",
        "format": "json",
        "schema": "v2",
        "destination": "s3://bucket/output/",
    }
}
RUN_PENDING_EXAMPLE = {
    "id": RUN_ID,
    "run_id": RUN_ID,
    "workflow_id": DEFINITION_ID,
    "workflow_name": "data-processing-pipeline",
    "workflow_definition_id": DEFINITION_ID,
    "workflow_version": 1,
    "status": "PENDING",
    "input_data": EXECUTE_EXAMPLE["input_data"],
    "triggered_by": "system",
    "created_at": T0,
    "updated_at": T0,
    "started_at": None,
    "completed_at": None,
    "cancelled_at": None,
    "cancelled_by": None,
    "error_message": None,
}
RUN_FAILED_EXAMPLE = {
    **RUN_PENDING_EXAMPLE,
    "status": "FAILED",
    "updated_at": T5,
    "started_at": T0,
    "completed_at": T5,
    "error_message": "Step 'transform' failed: Connection timeout",
}
RUN_COMPLETED_EXAMPLE = {
    **RUN_PENDING_EXAMPLE,
    "status": "COMPLETED",
    "updated_at": T5,
    "started_at": T0,
    "completed_at": T5,
}
RUN_CANCELLED_EXAMPLE = {
    **RUN_PENDING_EXAMPLE,
    "status": "CANCELLED",
    "updated_at": "2024-01-01T10:02:00Z",
    "started_at": T0,
    "cancelled_at": "2024-01-01T10:02:00Z",
    "cancelled_by": "system",
    "error_message": "Cancelled: Incorrect input data provided",
}
RUN_RETRIED_EXAMPLE = {**RUN_FAILED_EXAMPLE, "status": "PENDING", "completed_at": None}
RUN_STEPS_EXAMPLE = [
    {
        "id": STEP_IDS[0],
        "run_id": RUN_ID,
        "step_id": "extract",
        "step_name": "extract",
        "agent_name": "DataExtractorAgent",
        "status": "COMPLETED",
        "input_data": {"source_url": "https://api.example.com/data", "format": "json"},
        "output_data": {"data": [{"id": 1}, {"id": 2}], "record_count": 2},
        "started_at": T0,
        "completed_at": T1,
        "error_message": None,
        "retry_count": 0,
        "next_attempt_at": None,
    },
    {
        "id": STEP_IDS[1],
        "run_id": RUN_ID,
        "step_id": "transform",
        "step_name": "transform",
        "agent_name": "DataTransformerAgent",
        "status": "COMPLETED",
        "input_data": {"raw_data": [{"id": 1}, {"id": 2}], "schema": "v2"},
        "output_data": {"data": [{"id": 1, "valid": True}, {"id": 2, "valid": True}]},
        "started_at": T1,
        "completed_at": T3,
        "error_message": None,
        "retry_count": 0,
        "next_attempt_at": None,
    },
]
RUN_LOGS_EXAMPLE = {
    "run_id": RUN_ID,
    **page(
        "items",
        [
            {
                "id": 1,
                "timestamp": T0,
                "level": "INFO",
                "type": "run.created",
                "step_id": None,
                "step_name": None,
                "message": None,
                "data": {"status": "pending"},
            },
            {
                "id": 3,
                "timestamp": T0,
                "level": "INFO",
                "type": "step.started",
                "step_id": STEP_IDS[0],
                "step_name": "extract",
                "message": None,
                "data": {"step": "extract", "attempt": 1, "worker": "host:4242:1a2b3c4d"},
            },
            {
                "id": 9,
                "timestamp": "2024-01-01T10:01:30Z",
                "level": "WARNING",
                "type": "step.retrying",
                "step_id": STEP_IDS[1],
                "step_name": "transform",
                "message": "connection refused by agent at http://data-transformer:8080",
                "data": {"step": "transform", "attempt": 1, "duration_ms": 3.29, "retry_in": 1.0},
            },
        ],
        size=100,
        total=3,
    ),
}

READY_EXAMPLE = {
    "ready": True,
    "timestamp": T0,
    "checks": {
        "database": {
            "status": "healthy",
            "message": "Database connection active",
            "response_time_ms": 12.5,
        },
        "workers": {
            "status": "healthy",
            "message": "1 worker(s) heartbeating, 0/100 slots busy",
            "response_time_ms": 2.39,
        },
    },
}
NOT_READY_EXAMPLE = {
    "ready": False,
    "timestamp": T0,
    "checks": {
        "database": {
            "status": "unhealthy",
            "message": "Database connection failed: Connection refused",
            "response_time_ms": None,
        },
        "workers": {
            "status": "unknown",
            "message": "database unavailable: Connection refused",
            "response_time_ms": None,
        },
    },
}
PROMETHEUS_EXAMPLE = """\
# HELP api_info API information
# TYPE api_info gauge
api_info{version="0.1.0"} 1.0
# HELP api_uptime_seconds API uptime in seconds
# TYPE api_uptime_seconds gauge
api_uptime_seconds 3600.5
# HELP api_requests_total Total number of API requests
# TYPE api_requests_total counter
api_requests_total{method="GET",route="/health",status="200"} 12.0
"""
METRICS_EXAMPLE = {
    "workflows": {
        "total": 12,
        "pending": 1,
        "running": 2,
        "completed": 8,
        "failed": 1,
        "cancelled": 0,
    },
    "tasks": {
        "total": 40,
        "pending": 3,
        "running": 2,
        "retrying": 1,
        "completed": 32,
        "failed": 1,
        "cancelled": 0,
        "skipped": 1,
    },
    "workers": {"active": 1, "idle": 0, "slots": 100, "busy_slots": 2},
}


def restore_examples(spec: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Put the routes' declared examples back as written, in place.

    FastAPI serialises the document with `exclude_none=True`, which also drops
    every null field from the examples (a run's `completed_at: null` would
    vanish), so that the examples would no longer show what the server answers.
    """
    # Routers included in the app are nested (FastAPI >= 0.16x): walk them as
    # FastAPI's own document generation does.
    walk = getattr(fastapi.routing, "iter_route_contexts", iter)
    for route in walk(routes):
        operations = spec.get("paths", {}).get(getattr(route, "path_format", None), {})
        for method in getattr(route, "methods", None) or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            for code, declared in (getattr(route, "responses", None) or {}).items():
                answered = operation.get("responses", {}).get(str(code).lower(), {})
                _copy_examples(declared.get("content", {}), answered.get("content", {}))
            body = (getattr(route, "openapi_extra", None) or {}).get("requestBody", {})
            _copy_examples(
                body.get("content", {}), operation.get("requestBody", {}).get("content", {})
            )
    return spec


def _copy_examples(declared: Mapping[str, Any], answered: dict[str, Any]) -> None:
    for media_type, media in declared.items():
        target = answered.get(media_type)
        if target is None:
            continue
        for key in ("example", "examples"):
            if key in media:
                target[key] = media[key]
