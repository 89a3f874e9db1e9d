"""/openapi.json documents every operation completely: a success response with a
schema and an example, the shared error body on every error status, the request
body (schema and example) of every route that reads one, and references that
resolve. The documented models are also checked against what the server really
answers, field for field, and the request examples against the request models."""

from __future__ import annotations

import functools
import operator
import time
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, TypeAdapter

from flowctl.api import schemas
from flowctl.api.agent_execute import ExecuteIn
from flowctl.api.agent_runs import CancelIn
from flowctl.api.agent_workflows import AgentWorkflowIn, AgentWorkflowUpdate
from flowctl.api.agents import AgentIn, AgentPatch
from flowctl.api.flowctl import WorkflowIn

REF = "#/components/schemas/"
ERROR_REF = REF + "ErrorBody"
METHODS = ("get", "put", "post", "delete", "patch")
# POST/PUT routes that read no body at all.
BODYLESS = {
    ("put", "/api/v1/workflows/{workflow_id}/cancel"),
    ("post", "/api/v1/runs/{run_id}/retry"),
}
# Routes that answer a 503 with their own body (a health report), not the error body.
OWN_503 = {"/api/v1/health", "/health/ready"}
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (WorkflowIn, AgentWorkflowIn, AgentWorkflowUpdate, AgentIn, AgentPatch, ExecuteIn)
} | {"CancelIn": CancelIn}


@pytest.fixture(scope="module")
def spec(sqlite_api) -> dict[str, Any]:
    resp = sqlite_api.http.get("/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def operations(spec: dict[str, Any]):
    for path, item in spec["paths"].items():
        if path.startswith(("/docs", "/redoc", "/static", "/openapi")):
            continue
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for token in ref.removeprefix("#/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"unresolvable $ref {ref}"
        node = node[token]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def python_type(schema: dict[str, Any]) -> Any:
    """The documentation model(s) a response schema names."""
    if "$ref" in schema:
        return getattr(schemas, schema["$ref"].removeprefix(REF))
    if "anyOf" in schema or "oneOf" in schema:
        return functools.reduce(
            operator.or_, [python_type(s) for s in schema.get("anyOf") or schema["oneOf"]]
        )
    if schema.get("type") == "array":
        return list[python_type(schema["items"])]
    raise AssertionError(f"a response schema that names no model: {schema}")


def example_values(media: dict[str, Any]) -> list[Any]:
    values = [media["example"]] if "example" in media else []
    values += [e["value"] for e in media.get("examples", {}).values()]
    return values


def check_body(documented: Any, content: bytes, where: str) -> None:
    """Strict: JSON types as documented, every field present, no other field."""
    try:
        TypeAdapter(documented).validate_json(content, strict=True)
    except ValueError as exc:
        raise AssertionError(f"{where} does not match its documented model: {exc}") from None


# --- the document -------------------------------------------------------------------


def test_document_is_openapi_3_1_and_every_ref_resolves(spec):
    assert spec["openapi"].startswith("3.1")
    all_refs = refs(spec)
    assert all_refs
    for ref in all_refs:
        assert ref.startswith(REF), ref
        resolve(spec, ref)
    assert b"$defs" not in orjson.dumps(spec), "inline $defs left in the document"
    # FastAPI's own 422 shape is not what the server answers: it must not appear.
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert sum(1 for _ in operations(spec)) >= 27


def test_every_operation_documents_its_success_response_with_an_example(spec):
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        success = [code for code in op["responses"] if code.startswith("2")]
        assert len(success) == 1, (where, success)
        content = op["responses"][success[0]].get("content", {})
        if path == "/metrics":
            assert list(content) == ["text/plain; version=0.0.4; charset=utf-8"], where
            media = content["text/plain; version=0.0.4; charset=utf-8"]
            assert media["schema"] == {"type": "string"}
            assert "api_uptime_seconds" in media["example"]
            continue
        assert list(content) == ["application/json"], where
        media = content["application/json"]
        documented = python_type(media["schema"])
        examples = example_values(media)
        assert examples, f"{where}: no example for the success body"
        for value in examples:
            check_body(documented, orjson.dumps(value), f"{where} example")


def test_every_error_status_documents_the_error_body(spec):
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        assert responses["default"]["content"]["application/json"]["schema"] == {
            "$ref": ERROR_REF
        }, where
        for code, response in responses.items():
            if code.startswith("4") or (code.startswith("5") and path not in OWN_503):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (where, code)
                assert response["description"], (where, code)
        params = {p["in"] for p in op.get("parameters", [])}
        if "path" in params:
            assert "404" in responses, where
        if "query" in params:
            assert "422" in responses, where
        if "requestBody" in op:
            for code in ("400", "413", "422"):
                assert code in responses, (where, code)
        if path.startswith("/api/v1/") and path not in OWN_503:
            assert "503" in responses, where  # every /api/v1 route reads the database


def test_every_route_that_reads_a_body_documents_it_with_examples(spec):
    components = spec["components"]["schemas"]
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        if method not in ("post", "put") or (method, path) in BODYLESS:
            assert "requestBody" not in op, where
            continue
        body = op["requestBody"]
        media = body["content"]["application/json"]
        schema = media["schema"]
        names = [s["$ref"].removeprefix(REF) for s in schema.get("oneOf", [schema])]
        for name in names:
            assert name in components, (where, name)
        examples = example_values(media)
        assert examples, f"{where}: no request example"
        for value in examples:
            # Each example is a body the route accepts (strict, unknown fields refused).
            accepted = []
            for name in names:
                try:
                    REQUEST_MODELS[name].model_validate(value)
                    accepted.append(name)
                except ValueError:
                    pass
            assert len(accepted) == 1, (where, value, accepted)


def test_create_workflow_documents_both_shapes(spec):
    op = spec["paths"]["/api/v1/workflows"]["post"]
    media = op["requestBody"]["content"]["application/json"]
    assert media["schema"] == {
        "oneOf": [{"$ref": REF + "WorkflowIn"}, {"$ref": REF + "AgentWorkflowIn"}]
    }
    assert "tasks" in media["examples"]["flowctl"]["value"]
    assert {"start_step", "steps"} <= set(media["examples"]["agent_workflow"]["value"])
    created = op["responses"]["201"]["content"]["application/json"]
    assert python_type(created["schema"]) == schemas.Workflow | schemas.WorkflowDefinition
    assert set(created["examples"]) == {"flowctl", "agent_workflow"}


# --- the documentation against the server ---------------------------------------------


class Checker:
    """Sends requests and checks each answer against what the document says the
    operation answers with that status."""

    def __init__(self, api, spec: dict[str, Any]):
        self.http = api.http
        self.spec = spec
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, method: str, template: str, path: str | None = None, **kwargs):
        resp = self.http.request(method, path or template, **kwargs)
        op = self.spec["paths"][template][method.lower()]
        code = str(resp.status_code)
        assert code in op["responses"], f"{method} {template} answered undocumented {code}"
        content = op["responses"][code].get("content", {})
        if template == "/metrics":
            assert resp.headers["content-type"] in content
        else:
            assert resp.headers["content-type"] == "application/json"
            schema = content["application/json"]["schema"]
            check_body(python_type(schema), resp.content, f"{method} {template} ({code})")
        self.seen.add((method.lower(), template))
        return resp


def test_responses_match_their_documented_models(sqlite_api, spec):
    check = Checker(sqlite_api, spec)
    for path in ("/health", "/api/v1/health", "/health/ready", "/metrics", "/api/v1/metrics"):
        check("GET", path)

    # FlowCtl workflows and tasks.
    wf = check(
        "POST",
        "/api/v1/workflows",
        json={
            "name": "docs-flowctl",
            "tasks": [
                {"name": "a", "type": "generic", "payload": {"command": "true"}},
                {"name": "b", "type": "noop", "dependencies": ["a"]},
            ],
        },
    ).json()
    wid = f"/api/v1/workflows/{wf['id']}"
    sqlite_api.wait(wf["id"])
    check("GET", "/api/v1/workflows/{workflow_id}", wid)
    tasks = check("GET", "/api/v1/workflows/{workflow_id}/tasks", f"{wid}/tasks").json()["tasks"]
    check("GET", "/api/v1/tasks/{task_id}", f"/api/v1/tasks/{tasks[0]['id']}")
    assert (
        check("PUT", "/api/v1/workflows/{workflow_id}/cancel", f"{wid}/cancel").status_code == 409
    )
    check("PUT", "/api/v1/workflows/{workflow_id}/cancel", "/api/v1/workflows/nope/cancel")
    check("GET", "/api/v1/tasks/{task_id}", "/api/v1/tasks/nope")
    check("DELETE", "/api/v1/workflows/{workflow_id}", wid)  # a FlowCtl workflow: 400

    # Agents (nothing listens on the URL: the health check says why, a step fails).
    agent = check(
        "POST",
        "/api/v1/agents",
        json={
            "name": f"docs-agent-{time.monotonic_ns()}",
            "url": "http://127.0.0.1:9",
            "auth_type": "bearer",
            "auth_config": {"token": "secret"},
            "retry_config": {"max_retries": 0},
        },
    ).json()
    aid = f"/api/v1/agents/{agent['id']}"
    check("GET", "/api/v1/agents", params={"page_size": 5})
    check("GET", "/api/v1/agents/{agent_id}", aid)
    check("PUT", "/api/v1/agents/{agent_id}", aid, json={"description": "documented"})
    check("GET", "/api/v1/agents/{agent_id}/health", f"{aid}/health")
    check("POST", "/api/v1/agents", json={"name": agent["name"], "url": "http://x"})  # 400
    check("GET", "/api/v1/agents", params={"page_size": 0})  # 422

    # A definition, its versions and a run of it.
    definition = check(
        "POST",
        "/api/v1/workflows",
        json={
            "name": f"docs-definition-{time.monotonic_ns()}",
            "start_step": "only",
            "steps": {
                "only": {
                    "id": "only",
                    "agent_name": agent["name"],
                    "input_mapping": {"n": "${workflow.input.n}"},
                }
            },
        },
    ).json()
    did = f"/api/v1/workflows/{definition['id']}"
    check("GET", "/api/v1/workflows/{workflow_id}", did)
    check("PUT", "/api/v1/workflows/{workflow_id}", did, json={"description": "v1"})
    check("GET", "/api/v1/workflows/{workflow_id}/versions", f"{did}/versions")
    check("GET", "/api/v1/workflows", params={"page_size": 3})
    check("GET", "/api/v1/workflows", params={"status": "active"})
    check("POST", "/api/v1/workflows", content=b"{not json")  # 400
    check("POST", "/api/v1/workflows", json={"name": "neither"})  # 422
    run = check(
        "POST",
        "/api/v1/workflows/{workflow_id}/execute",
        f"{did}/execute",
        json={"input_data": {"n": 1}},
    ).json()
    rid = f"/api/v1/runs/{run['id']}"
    deadline = time.monotonic() + 30
    while check("GET", "/api/v1/runs/{run_id}", rid).json()["status"] in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.05)
    check("GET", "/api/v1/runs/{run_id}/steps", f"{rid}/steps")
    check("GET", "/api/v1/runs/{run_id}/logs", f"{rid}/logs", params={"level": "ERROR"})
    check("GET", "/api/v1/runs/{run_id}/logs", f"{rid}/logs")
    check("GET", "/api/v1/runs", params={"status": "FAILED", "sort_by": "status"})
    check("GET", "/api/v1/runs", params={"created_after": "yesterday"})  # 422
    check("POST", "/api/v1/runs/{run_id}/cancel", f"{rid}/cancel")  # ended: 400
    assert check("POST", "/api/v1/runs/{run_id}/retry", f"{rid}/retry").status_code == 202
    check("POST", "/api/v1/runs/{run_id}/cancel", f"{rid}/cancel", json={"reason": "docs"})
    check("POST", "/api/v1/runs/{run_id}/retry", "/api/v1/runs/nope/retry")  # 404
    check("GET", "/api/v1/runs/{run_id}/steps", "/api/v1/runs/nope/steps")  # 404

    # Deletes, and what a deleted definition or agent answers.
    check("DELETE", "/api/v1/workflows/{workflow_id}", did)
    check("POST", "/api/v1/workflows/{workflow_id}/execute", f"{did}/execute", json={})  # 422
    check(
        "POST",
        "/api/v1/workflows/{workflow_id}/execute",
        f"{did}/execute",
        json={"input_data": {}},
    )  # deleted: 400
    check("DELETE", "/api/v1/agents/{agent_id}", aid)
    check("DELETE", "/api/v1/agents/{agent_id}", aid)  # already deleted: 409

    unexercised = {(m, p) for p, m, _ in operations(spec)} - check.seen
    assert not unexercised, f"operations this test did not exercise: {sorted(unexercised)}"
