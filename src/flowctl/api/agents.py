"""Agents (specs/workflow-management-api.md, Agent Management): remote A2A
services that `agent` steps call. Thin: parse, call AgentService, render.

`auth_config` is write-only: it is stored encrypted and answered masked, its
keys with every value replaced by "****".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from flowctl.api import schemas as doc
from flowctl.api.body import read_model
from flowctl.api.render import JSONBody, iso, page_keys
from flowctl.engine.agents import masked_auth_config

if TYPE_CHECKING:
    from flowctl.engine.runtime import Runtime


def _agent_name(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


def _agent_url(value: str) -> str:
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials: put them in auth_config")
    return value


AgentName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_agent_name)]
AgentUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_agent_url)]
Description = Annotated[str, Field(max_length=10_000)]
AuthType = Literal["none", "bearer", "apikey"]
AuthConfig = Annotated[
    dict[str, Annotated[str, Field(min_length=1, max_length=8192)]], Field(max_length=8)
]
TimeoutMs = Annotated[int, Field(ge=1000, le=300_000, description="default 30000")]
MaxRetries = Annotated[int, Field(ge=0, le=10)]
InitialDelayMs = Annotated[int, Field(ge=100, le=3_600_000)]
MaxDelayMs = Annotated[int, Field(ge=1000, le=86_400_000)]
BackoffMultiplier = Annotated[float, Field(ge=1.0, le=100.0)]


class _Strict(BaseModel):
    # As on the FlowCtl surface: "3" is not an integer, unknown fields are errors.
    model_config = ConfigDict(strict=True, extra="forbid")


class RetryConfigIn(_Strict):
    max_retries: MaxRetries = 3
    initial_delay_ms: InitialDelayMs = 1000
    max_delay_ms: MaxDelayMs = 30_000
    backoff_multiplier: BackoffMultiplier = 2.0


class AgentIn(_Strict):
    name: AgentName
    url: AgentUrl
    description: Description | None = None
    auth_type: AuthType = "none"
    auth_config: AuthConfig | None = None
    timeout_ms: TimeoutMs = 30_000
    retry_config: RetryConfigIn | None = None


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out but not null")
    return value


class RetryConfigPatch(_Strict):
    """Only the keys given change; the others keep their stored values."""

    max_retries: MaxRetries | None = None
    initial_delay_ms: InitialDelayMs | None = None
    max_delay_ms: MaxDelayMs | None = None
    backoff_multiplier: BackoffMultiplier | None = None

    _present = field_validator("*")(_not_null)


class AgentPatch(_Strict):
    """Every field optional; only those sent change. `description` and
    `auth_config` may be null (cleared); the others may not."""

    name: AgentName | None = None
    url: AgentUrl | None = None
    description: Description | None = None
    auth_type: AuthType | None = None
    auth_config: AuthConfig | None = None
    timeout_ms: TimeoutMs | None = None
    retry_config: RetryConfigPatch | None = None
    status: Literal["active", "inactive"] | None = None

    _present = field_validator("name", "url", "auth_type", "timeout_ms", "retry_config", "status")(
        _not_null
    )

    def changes(self) -> dict[str, Any]:
        out = {key: getattr(self, key) for key in self.model_fields_set}
        if self.retry_config is not None:
            out["retry_config"] = self.retry_config.model_dump(exclude_unset=True)
        return out


def render_agent(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "url": row["url"],
        "description": row["description"],
        "auth_type": row["auth_type"],
        "auth_config": masked_auth_config(row),
        "timeout_ms": row["timeout_ms"],
        "retry_config": row["retry_config"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def build_router(runtime: Runtime) -> APIRouter:
    service = runtime.agents
    _ = service.box  # load the key now (or create it): a bad key stops the start
    settings = runtime.settings
    router = APIRouter(prefix="/api/v1/agents", tags=["Agents"])

    @router.post(
        "",
        status_code=201,
        summary="Register an agent",
        openapi_extra=doc.request_body(
            AgentIn,
            examples={"bearer": ("An agent called with a bearer token", doc.AGENT_CREATE_EXAMPLE)},
        ),
        responses=doc.responses(
            201,
            doc.Agent,
            "Registered (auth_config answered masked)",
            example=doc.AGENT_EXAMPLE,
            errors={
                400: "The body is not valid JSON, or an agent with this name already exists",
                413: None,
                422: None,
                503: None,
            },
        ),
    )
    async def create_agent(request: Request):
        body = await read_model(request, AgentIn, settings)
        row = await service.create(
            name=body.name,
            url=body.url,
            description=body.description,
            auth_type=body.auth_type,
            auth_config=body.auth_config,
            timeout_ms=body.timeout_ms,
            retry_config=body.retry_config.model_dump() if body.retry_config else None,
        )
        return JSONBody(render_agent(row), status_code=201)

    @router.get(
        "",
        summary="List agents (deleted ones only with status=deleted)",
        responses=doc.responses(
            200,
            doc.AgentList,
            "One page of agents",
            example=doc.page("items", [doc.AGENT_EXAMPLE]),
            errors={422: None, 503: None},
        ),
    )
    async def list_agents(
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int = Query(20, ge=1, le=100),
        status: Literal["active", "inactive", "deleted"] | None = Query(None),
    ):
        rows, total = await service.list_agents(status=status, page=page, page_size=page_size)
        return JSONBody(page_keys("items", [render_agent(r) for r in rows], total, page, page_size))

    @router.get(
        "/{agent_id}",
        summary="Get an agent",
        responses=doc.responses(
            200,
            doc.Agent,
            "The agent",
            example=doc.AGENT_EXAMPLE,
            errors={404: "No agent has this id", 503: None},
        ),
    )
    async def get_agent(agent_id: str):
        return JSONBody(render_agent(await service.get(agent_id)))

    @router.put(
        "/{agent_id}",
        summary="Update an agent (only the fields sent)",
        openapi_extra=doc.request_body(
            AgentPatch, examples={"timeout": ("Change two fields", doc.AGENT_UPDATE_EXAMPLE)}
        ),
        responses=doc.responses(
            200,
            doc.Agent,
            "The agent as updated",
            example={
                **doc.AGENT_EXAMPLE,
                **doc.AGENT_UPDATE_EXAMPLE,
                "updated_at": doc.T5,
            },
            errors={
                400: "The body is not valid JSON, or another agent has this name",
                404: "No agent has this id",
                409: "The agent is deleted and can no longer be changed",
                413: None,
                422: None,
                503: None,
            },
        ),
    )
    async def update_agent(agent_id: str, request: Request):
        patch = await read_model(request, AgentPatch, settings)
        return JSONBody(render_agent(await service.update(agent_id, patch.changes())))

    @router.delete(
        "/{agent_id}",
        summary="Delete an agent (soft: its status becomes deleted)",
        responses=doc.responses(
            200,
            doc.Message,
            "Deleted",
            example={"message": f"Agent '{doc.AGENT_ID}' deleted successfully"},
            errors={
                404: "No agent has this id",
                409: "The agent is already deleted",
                503: None,
            },
        ),
    )
    async def delete_agent(agent_id: str):
        await service.delete(agent_id)
        return JSONBody({"message": f"Agent '{agent_id}' deleted successfully"})

    @router.get(
        "/{agent_id}/health",
        summary="Call the agent's /health endpoint",
        responses=doc.responses(
            200,
            doc.AgentHealth,
            "The outcome of the call (an unreachable agent is `healthy: false`, still a 200)",
            examples=doc.AGENT_HEALTH_EXAMPLES,
            errors={404: "No agent has this id", 503: None},
        ),
    )
    async def agent_health(agent_id: str):
        return JSONBody(await service.check_health(agent_id))

    return router
