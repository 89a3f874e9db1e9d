"""The FlowCtl surface (specs/flowctl-api.md): workflows as a `tasks` list.

A workflow here is a one-shot definition and its run, sharing one id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from flowctl.api import schemas as doc
from flowctl.api.render import JSONBody, iso
from flowctl.domain.backoff import RetryPolicy
from flowctl.domain.durations import format_duration, parse_duration
from flowctl.domain.graph import StepSpec, compile_tasks
from flowctl.domain.runsettings import RunSettings
from flowctl.engine.service import NewWorkflow, WorkflowService

Duration = Annotated[str | float, AfterValidator(parse_duration)]


class _Strict(BaseModel):
    # Wrong JSON types are errors ("1" is not an integer); unknown fields are
    # errors too, so a misspelt "dependecies" is not silently ignored.
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)


class RetryPolicyIn(_Strict):
    max_attempts: int = Field(3, ge=1, le=101, description="attempts in all, first included")
    initial_delay: Duration = Field("1s", description="e.g. 500ms, 1s, 1m")
    max_delay: Duration = Field("5m")
    backoff_factor: float = Field(2.0, ge=1.0, le=100.0)


class WorkflowConfigIn(_Strict):
    max_concurrency: int = Field(10, ge=1, le=10_000, description="tasks of this workflow at once")
    timeout: Duration = Field("1h", description="the whole workflow, from its start")
    retry_policy: RetryPolicyIn | None = None


class TaskIn(_Strict):
    name: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)
    max_retries: int | None = Field(None, ge=0, le=100, description="default 3")
    priority: int = Field(1, ge=-1_000_000, le=1_000_000, description="higher runs first")
    dependencies: list[str] = Field(default_factory=list, max_length=10_000)
    timeout: Duration | None = Field(None, description="one attempt of this task")


class WorkflowIn(_Strict):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    config: WorkflowConfigIn | None = None
    tasks: list[TaskIn] = Field(min_length=1)


def to_new_workflow(body: WorkflowIn, service: WorkflowService) -> NewWorkflow:
    config = body.config or WorkflowConfigIn()
    retry_in = config.retry_policy
    retry = RetryPolicy(
        # An explicit retry_policy sets the default for tasks without max_retries;
        # otherwise the task default (3) applies.
        max_retries=(retry_in.max_attempts - 1) if retry_in else 3,
        initial_delay=retry_in.initial_delay if retry_in else 1.0,
        max_delay=retry_in.max_delay if retry_in else 300.0,
        backoff_factor=retry_in.backoff_factor if retry_in else 2.0,
    )
    specs = [
        StepSpec(
            name=task.name,
            type=task.type,
            payload=task.payload,
            dependencies=tuple(task.dependencies),
            priority=task.priority,
            max_retries=task.max_retries,
            timeout=task.timeout,
            loc=f"tasks[{i}]",
        )
        for i, task in enumerate(body.tasks)
    ]
    graph = service.compile(lambda known_types: compile_tasks(specs, known_types=known_types))
    service.check_steps(graph.steps)
    echo = {
        "max_concurrency": config.max_concurrency,
        "timeout": format_duration(config.timeout),
        "retry_policy": {
            "max_attempts": retry.max_retries + 1,
            "initial_delay": format_duration(retry.initial_delay),
            "max_delay": format_duration(retry.max_delay),
            "backoff_factor": retry.backoff_factor,
        },
    }
    return NewWorkflow(
        name=body.name,
        kind="tasks",
        graph=graph,
        settings=RunSettings(
            max_concurrency=config.max_concurrency, timeout=config.timeout or None, retry=retry
        ),
        description=body.description,
        config=echo,
    )


# --- rendering ------------------------------------------------------------------


def render_task(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": step["id"],
        "workflow_id": step["run_id"],
        "name": step["name"],
        "type": step["type"],
        "status": step["status"],
        "payload": step["payload"],
        "result": step["result"],
        "error": step["error"],
        "retry_count": step["retry_count"],
        "max_retries": step["max_retries"],
        "priority": step["priority"],
        "dependencies": step["dependencies"],
        "timeout": format_duration(step["timeout_s"]) if step["timeout_s"] is not None else None,
        "next_attempt_at": iso(step["available_at"]) if step["status"] == "retrying" else None,
        "created_at": iso(step["created_at"]),
        "updated_at": iso(step["updated_at"]),
        "started_at": iso(step["started_at"]),
        "completed_at": iso(step["completed_at"]),
    }


def render_workflow(run: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "name": run["name"],
        "description": run["description"],
        "status": run["status"],
        "tasks": [render_task(s) for s in steps],
        "config": run["config"],
        "error": run["error"],
        "created_at": iso(run["created_at"]),
        "updated_at": iso(run["updated_at"]),
        "started_at": iso(run["started_at"]),
        "completed_at": iso(run["completed_at"]),
    }


# --- routes ---------------------------------------------------------------------


def build_router(service: WorkflowService) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["FlowCtl workflows"])

    # POST/GET /workflows and GET /workflows/{id} are shared with agent-workflow
    # definitions: they live in agent_workflows.py, which dispatches to
    # WorkflowIn, to_new_workflow and render_workflow above.

    @router.get(
        "/workflows/{workflow_id}/tasks",
        summary="List a workflow's tasks",
        responses=doc.responses(
            200,
            doc.WorkflowTasks,
            "The workflow's tasks",
            example={"tasks": doc.WORKFLOW_RUNNING_EXAMPLE["tasks"]},
            errors={404: "No workflow (or run) has this id", 503: None},
        ),
    )
    async def get_workflow_tasks(workflow_id: str):
        _, steps = await service.get_run(workflow_id)
        return JSONBody({"tasks": [render_task(s) for s in steps]})

    @router.put(
        "/workflows/{workflow_id}/cancel",
        summary="Cancel a workflow",
        responses=doc.responses(
            200,
            doc.Message,
            "Cancelled: its running tasks are stopped",
            example={"message": "Workflow cancelled"},
            errors={
                404: "No workflow (or run) has this id",
                409: "The workflow has already ended (completed, failed or cancelled)",
                503: None,
            },
        ),
    )
    async def cancel_workflow(workflow_id: str):
        await service.cancel(workflow_id, by="api")
        return JSONBody({"message": "Workflow cancelled"})

    @router.get(
        "/tasks/{task_id}",
        summary="Get a task",
        responses=doc.responses(
            200,
            doc.Task,
            "The task",
            example=doc.TASK_EXAMPLE,
            errors={404: "No task has this id", 503: None},
        ),
    )
    async def get_task(task_id: str):
        return JSONBody(render_task(await service.get_step(task_id)))

    return router
