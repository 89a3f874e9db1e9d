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

import copy
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

STATIC_URL = "/static/docs"
_ASSETS = files("fastapi_offline") / "static"


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add /docs, /redoc and their local assets to an app built with
    `docs_url=None, redoc_url=None` (so FastAPI adds no CDN-backed pages of its own),
    and make the generated OpenAPI document's schema references resolvable."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the API documentation pages need app.openapi_url")
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            hoist_defs(generate())  # FastAPI caches the document in app.openapi_schema
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


def hoist_defs(spec: dict[str, Any]) -> dict[str, Any]:
    """Move inline JSON Schema `$defs` into `components/schemas`, in place.

    A Pydantic `model_json_schema()` placed in a route's `openapi_extra` (as the
    FlowCtl create-workflow body is) carries its own `$defs` with references like
    `#/$defs/TaskIn`. Such a reference is resolved against the root of the OpenAPI
    document, where there is no `$defs`: ReDoc then refuses to render at all
    ("Invalid reference token: $defs") and Swagger UI shows resolver errors. Each
    definition becomes a component (reused when an identical one exists, renamed
    when a different one has its name) and the references are rewritten to it.
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            names: dict[str, str] = {}
            for name, schema in defs.items():
                target, n = name, 2
                while target in schemas and schemas[target] != _rewritten(schema, {name: name}):
                    target, n = f"{name}{n}", n + 1
                names[name] = target
            _rewrite_refs(node, names)
            for name, schema in defs.items():
                _rewrite_refs(schema, names)
                visit(schema)
                schemas[names[name]] = schema
        for value in node.values():
            visit(value)

    visit(spec.get("paths", {}))
    visit(spec.get("webhooks", {}))
    return spec


def _rewritten(schema: Any, names: dict[str, str]) -> Any:
    clone = copy.deepcopy(schema)
    _rewrite_refs(clone, names)
    return clone


def _rewrite_refs(node: Any, names: dict[str, str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_refs(item, names)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in names:
                node["$ref"] = f"#/components/schemas/{names[name]}"
        for key, value in node.items():
            if key != "$defs":  # nested $defs are handled when visited
                _rewrite_refs(value, names)
