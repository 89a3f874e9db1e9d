"""`POST /api/v1/workflows/{id}/execute`: start a run of an agent-workflow
definition (specs/workflow-management-api.md, "Execute Workflow")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from flowctl.api import schemas as doc
from flowctl.api.agent_runs import render_run
from flowctl.api.body import read_model
from flowctl.api.render import JSONBody
from flowctl.engine.agents import AgentService
from flowctl.engine.definitions import DefinitionService
from flowctl.engine.service import WorkflowService


class ExecuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_data: dict[str, Any] = Field(
        description="The workflow's input: what `${workflow.input.x}` refers to"
    )


def build_router(service: WorkflowService, agents: AgentService) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["Workflows"])
    definitions = DefinitionService.for_workflows(service)
    settings = service.settings

    @router.post(
        "/workflows/{workflow_id}/execute",
        status_code=202,
        summary="Start a run of an agent workflow",
        openapi_extra=doc.request_body(
            ExecuteIn, examples={"etl": ("The ETL example's input", doc.EXECUTE_EXAMPLE)}
        ),
        responses=doc.responses(
            202,
            doc.Run,
            "Accepted: the run is created PENDING and runs in the background",
            example=doc.RUN_PENDING_EXAMPLE,
            errors={
                400: "The body is not valid JSON, or the workflow is inactive, deleted or "
                "a FlowCtl workflow",
                404: "No workflow has this id",
                413: None,
                422: None,
                503: None,
            },
        ),
    )
    async def execute_workflow(workflow_id: str, request: Request):
        body = await read_model(request, ExecuteIn, settings)
        run = await definitions.execute(
            workflow_id, body.input_data, workflows=service, agents=agents
        )
        return JSONBody(render_run(run), status_code=202)

    return router
