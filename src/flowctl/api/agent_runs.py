"""The agent-workflow runs surface (specs/workflow-management-api.md, "Run
Monitoring"): `/api/v1/runs`. Every run is listed here, whichever surface
started it; statuses are upper case on these paths (PRODUCT.md)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from flowctl.api import schemas as doc
from flowctl.api.body import parse_model, read_body
from flowctl.api.errors import ApiError
from flowctl.api.render import JSONBody, iso, page_keys, parse_iso
from flowctl.domain.graph import FieldError
from flowctl.domain.states import RunStatus
from flowctl.engine.errors import Conflict, ServiceError
from flowctl.engine.service import WorkflowService
from flowctl.store.runs import RunFilter

UpperRunStatus = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]

# How a step status reads on this surface. A step waiting out its backoff is
# pending again as far as these clients are concerned; `retry_count` and
# `next_attempt_at` say why.
_STEP_STATUS = {
    "pending": "PENDING",
    "retrying": "PENDING",
    "running": "RUNNING",
    "completed": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "skipped": "SKIPPED",
}


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=2000)


def render_run(run: dict[str, Any]) -> dict[str, Any]:
    status = run["status"]
    return {
        "id": run["id"],
        "run_id": run["id"],
        "workflow_id": run["definition_id"],
        "workflow_name": run["name"],
        "workflow_definition_id": run["definition_id"],
        "workflow_version": run["definition_version"],
        "status": status.upper(),
        "input_data": run["input"] if run["input"] is not None else {},
        "triggered_by": run["triggered_by"] or "system",
        "created_at": iso(run["created_at"]),
        "updated_at": iso(run["updated_at"]),
        "started_at": iso(run["started_at"]),
        # The spec's cancelled run has no completed_at: it was stopped, not finished.
        "completed_at": iso(run["completed_at"]) if status != "cancelled" else None,
        "cancelled_at": iso(run["cancelled_at"]),
        "cancelled_by": run["cancelled_by"],
        "error_message": run["error"],
    }


def render_step(step: dict[str, Any]) -> dict[str, Any]:
    started = step["started_at"] is not None
    return {
        "id": step["id"],
        "run_id": step["run_id"],
        "step_id": step["name"],
        "step_name": step["name"],
        "agent_name": step["agent"],
        "status": _STEP_STATUS[step["status"]],
        # What the step was given, templates resolved; before it starts, as written.
        "input_data": step["input"] if step["input"] is not None else step["payload"],
        "output_data": step["result"],
        "started_at": iso(step["started_at"]) if started else None,
        "completed_at": iso(step["completed_at"]),
        "error_message": step["error"],
        "retry_count": step["retry_count"],
        "next_attempt_at": iso(step["available_at"]) if step["status"] == "retrying" else None,
    }


def render_event(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"] or {}
    return {
        "id": event["id"],
        "timestamp": iso(event["created_at"]),
        "level": event["level"].upper(),
        "type": event["type"],
        "step_id": event["step_id"],
        "step_name": data.get("step"),
        "message": event["message"],
        "data": data,
    }


def _step_order(step: dict[str, Any]) -> tuple:
    # "ordered by start time": steps that have not started come last, in order.
    started = step["started_at"]
    return (started is None, started or 0.0, step["seq"])


def build_router(service: WorkflowService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/runs", tags=["Agent workflow runs"])
    settings = service.settings

    @router.get(
        "",
        summary="List runs, filtered and sorted",
        responses=doc.responses(
            200,
            doc.RunList,
            "One page of runs",
            example=doc.page("items", [doc.RUN_FAILED_EXAMPLE]),
            errors={422: None, 503: None},
        ),
    )
    async def list_runs(
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int = Query(20, ge=1, le=100),
        status: UpperRunStatus | None = Query(None),
        workflow_id: str | None = Query(None, max_length=255),
        workflow_definition_id: str | None = Query(None, max_length=255),
        created_after: str | None = Query(None, description="ISO 8601"),
        created_before: str | None = Query(None, description="ISO 8601"),
        sort_by: Literal["created_at", "updated_at", "completed_at", "status"] = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ):
        if workflow_id and workflow_definition_id and workflow_id != workflow_definition_id:
            # Both name the same thing here: a run belongs to one definition.
            rows, total = [], 0
            return JSONBody(page_keys("items", rows, total, page, page_size))
        flt = RunFilter(
            statuses=[RunStatus(status.lower()).value] if status else None,
            definition_id=workflow_id or workflow_definition_id,
            created_after=_timestamp("created_after", created_after),
            created_before=_timestamp("created_before", created_before),
            sort_by=sort_by,
            descending=sort_order == "desc",
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        rows, total = await service.list_runs(flt)
        return JSONBody(page_keys("items", [render_run(r) for r in rows], total, page, page_size))

    @router.get(
        "/{run_id}",
        summary="Get a run",
        responses=doc.responses(
            200,
            doc.Run,
            "The run",
            example=doc.RUN_COMPLETED_EXAMPLE,
            errors={404: "No run has this id", 503: None},
        ),
    )
    async def get_run(run_id: str):
        run, _ = await service.get_run(run_id, resource="Run")
        return JSONBody(render_run(run))

    @router.get(
        "/{run_id}/steps",
        summary="A run's steps, in the order they started",
        responses=doc.responses(
            200,
            list[doc.RunStep],
            "The steps (a JSON array); those not started yet come last",
            example=doc.RUN_STEPS_EXAMPLE,
            errors={404: "No run has this id", 503: None},
        ),
    )
    async def get_run_steps(run_id: str):
        _, steps = await service.get_run(run_id, resource="Run")
        return JSONBody([render_step(s) for s in sorted(steps, key=_step_order)])

    @router.post(
        "/{run_id}/retry",
        status_code=202,
        summary="Retry a failed or cancelled run",
        description="Resumes from the first incomplete step; completed steps do not run "
        "again. Any request body is ignored.",
        responses=doc.responses(
            202,
            doc.Run,
            "Accepted: the run is pending again",
            example=doc.RUN_RETRIED_EXAMPLE,
            errors={
                400: "The run is not FAILED or CANCELLED",
                404: "No run has this id",
                503: None,
            },
        ),
    )
    async def retry_run(run_id: str):
        try:
            result = await service.retry(run_id, by="api")
        except Conflict as exc:
            raise ServiceError(exc.message) from None  # this surface says 400
        return JSONBody(render_run(result.run), status_code=202)

    @router.post(
        "/{run_id}/cancel",
        summary="Cancel a pending or running run",
        openapi_extra=doc.request_body(
            CancelIn,
            required=False,
            description="Optional: an empty body cancels without a reason",
            examples={"reason": ("With a reason", {"reason": "Incorrect input data provided"})},
        ),
        responses=doc.responses(
            200,
            doc.Run,
            "Cancelled: the running agent call is stopped",
            example=doc.RUN_CANCELLED_EXAMPLE,
            errors={
                400: "The body is not valid JSON, or the run is not PENDING or RUNNING",
                404: "No run has this id",
                413: None,
                422: None,
                503: None,
            },
        ),
    )
    async def cancel_run(run_id: str, request: Request):
        # The body is optional; an empty one means no reason.
        value = await read_body(request, settings, optional=True)
        reason = None if value is None else parse_model(CancelIn, value).reason
        try:
            await service.cancel(run_id, by="system", reason=reason, resource="Run")
        except Conflict as exc:
            raise ServiceError(exc.message) from None  # this surface says 400
        run, _ = await service.get_run(run_id, resource="Run")
        return JSONBody(render_run(run))

    @router.get(
        "/{run_id}/logs",
        summary="A run's log: every state change and log line",
        responses=doc.responses(
            200,
            doc.RunLogs,
            "One page of the run's events, oldest first",
            example=doc.RUN_LOGS_EXAMPLE,
            errors={404: "No run has this id", 422: None, 503: None},
        ),
    )
    async def get_run_logs(
        run_id: str,
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int = Query(100, ge=1, le=1000),
        level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Query(None),
    ):
        events, total = await service.run_events(
            run_id,
            levels=[level.lower()] if level else None,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        body = page_keys("items", [render_event(e) for e in events], total, page, page_size)
        return JSONBody({"run_id": run_id, **body})

    return router


def _timestamp(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        error = FieldError(name, f"not an ISO 8601 timestamp: {value!r}", "value_error")
        raise ApiError(422, f"Validation failed: {error}", [error]) from None
