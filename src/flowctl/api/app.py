"""The FastAPI application: one app, every surface, one runtime underneath."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from flowctl import __version__
from flowctl.api import flowctl as flowctl_surface
from flowctl.api import system
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
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(system.build_router(runtime.service))
    app.include_router(flowctl_surface.build_router(runtime.service))
    return app
