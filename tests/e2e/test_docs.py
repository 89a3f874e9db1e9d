"""The API documentation pages work with no internet access: /openapi.json is a valid
OpenAPI 3.1 document, and /docs (Swagger UI) and /redoc (ReDoc) render it in a real
headless Chromium that cannot resolve any host but 127.0.0.1, so a page that needed a
CDN would stay blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import IN_CI

FLOWCTL_PATHS = [
    "/api/v1/workflows",
    "/api/v1/workflows/{workflow_id}",
    "/api/v1/workflows/{workflow_id}/tasks",
    "/api/v1/workflows/{workflow_id}/cancel",
]
REMOTE_URL = re.compile(r"https?://", re.IGNORECASE)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if IN_CI:
        pytest.fail("CI=true but chromium is not installed (`make test-tools` installs it)")
    pytest.skip("chromium not found: `make test-tools` installs it (Debian package chromium)")


def render(url: str, profile: Path) -> str:
    """The DOM of `url` after its scripts ran, in a browser that can reach only loopback."""
    result = subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # Any name but 127.0.0.1 fails to resolve: a CDN asset could not load.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def resolve(document: dict, ref: str):
    node = document
    for token in ref.removeprefix("#/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"unresolvable $ref {ref}"
        node = node[token]
    return node


def refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_openapi_document(sqlite_api):
    resp = sqlite_api.http.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"]), spec["openapi"]
    for path in FLOWCTL_PATHS:
        assert path in spec["paths"], path
    assert "post" in spec["paths"]["/api/v1/workflows"]
    # Every reference resolves inside the document (an inline Pydantic schema's
    # `#/$defs/...` would not, and ReDoc refuses to render such a document).
    all_refs = refs(spec)
    assert all_refs
    for ref in all_refs:
        assert ref.startswith("#/components/schemas/"), ref
        resolve(spec, ref)
    # The create body is one of two shapes: FlowCtl's `tasks` or a definition's `steps`.
    body = spec["paths"]["/api/v1/workflows"]["post"]["requestBody"]
    flowctl_ref, definition_ref = (
        s["$ref"] for s in body["content"]["application/json"]["schema"]["oneOf"]
    )
    flowctl_body = resolve(spec, flowctl_ref)
    assert resolve(spec, flowctl_body["properties"]["tasks"]["items"]["$ref"])["title"] == "TaskIn"
    assert {"start_step", "steps"} <= set(resolve(spec, definition_ref)["required"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_assets_locally(sqlite_api, page):
    resp = sqlite_api.http.get(page)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert not REMOTE_URL.search(html), f"{page} references a remote URL:\n{html}"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), asset
        fetched = sqlite_api.http.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.content) > 1000, asset


def test_swagger_ui_renders_offline(sqlite_api, tmp_path):
    dom = render(f"{sqlite_api.server.url}/docs", tmp_path / "profile")
    assert 'class="swagger-ui' in dom, dom[:3000]
    assert dom.count("opblock-summary-path") >= len(FLOWCTL_PATHS), dom[:3000]
    assert "opblock-post" in dom and "opblock-get" in dom
    for path in FLOWCTL_PATHS:
        assert f'data-path="{path}"' in dom, path
    assert "Create a workflow and queue it" in dom
    assert "Failed to load API definition" not in dom


def test_redoc_renders_offline(sqlite_api, tmp_path):
    dom = render(f"{sqlite_api.server.url}/redoc", tmp_path / "profile")
    assert "Something went wrong" not in dom, dom[-5000:]
    assert "/api/v1/workflows" in dom, dom[-5000:]
    for path in FLOWCTL_PATHS:
        assert path in dom, path
    for operation in ("Create a workflow and queue it", "List workflows"):
        assert operation in dom, operation
    # The create body's schema is shown, through its references (config is WorkflowConfigIn).
    assert "Request Body schema" in dom
    assert "max_concurrency" in dom
