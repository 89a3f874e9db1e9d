"""The FastAPI application: one app, every surface, one runtime underneath."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from flowctl import __version__
from flowctl.api import agent_execute, agent_runs, agent_workflows, system
from flowctl.api import agents as agents_surface
from flowctl.api import flowctl as flowctl_surface
from flowctl.api.docs import install_docs
from flowctl.api.errors import install_error_handlers
from flowctl.api.middleware import RequestContextMiddleware
from flowctl.api.render import JSONBody
from flowctl.config import Settings
from flowctl.engine.runtime import Runtime


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="flowctl",
        version=__version__,
        description="Durable workflow orchestration: FlowCtl, agent workflows, FlowRunner "
        "and PyTaskFlow APIs on one engine.",
        lifespan=lifespan,
        default_response_class=JSONBody,
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    install_docs(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(system.build_router(runtime.service))
    app.include_router(flowctl_surface.build_router(runtime.service))
    app.include_router(agent_workflows.build_router(runtime.service))
    app.include_router(agents_surface.build_router(runtime))
    app.include_router(agent_runs.build_router(runtime.service))
    app.include_router(agent_execute.build_router(runtime.service, runtime.agents))
    return app
