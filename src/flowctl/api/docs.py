"""API documentation pages (Swagger UI at /docs, ReDoc at /redoc) that work offline.

FastAPI's built-in pages load their JavaScript and CSS from a CDN, so on a machine
without internet access they render blank. flowctl serves those assets itself.

They come from the `fastapi-offline` package (MIT, pinned in pyproject.toml), which
ships the swagger-ui-dist bundle (swagger-ui-bundle.js, swagger-ui.css) and ReDoc's
redoc.standalone.js as package data, refreshed with each of its releases. We use only
its static files, not its `FastAPIOffline` factory, so that `create_app` keeps
building the FastAPI object itself and the pages get flowctl's titles. A maintained
package was preferred over vendoring the minified files into this repository:
upgrading is a one-line pin change, and `swagger-ui-bundle` (the other candidate)
has no ReDoc and has not been released since 2023.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from flowctl.api.schemas import add_request_schemas, restore_examples

STATIC_URL = "/static/docs"
_ASSETS = files("fastapi_offline") / "static"


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add /docs, /redoc and their local assets to an app built with
    `docs_url=None, redoc_url=None` (so FastAPI adds no CDN-backed pages of its own),
    and complete the generated OpenAPI document: the request-body models that routes
    reading their own body refer to by `$ref` (`schemas.request_body`), and the
    examples as declared (FastAPI drops their null fields)."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the API documentation pages need app.openapi_url")
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()  # FastAPI caches it in app.openapi_schema
            add_request_schemas(spec)
            restore_examples(spec, app.routes)
        return app.openapi_schema

    app.openapi = openapi

    app.mount(STATIC_URL, StaticFiles(directory=str(_ASSETS)), name="docs-static")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    if oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
