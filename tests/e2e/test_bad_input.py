"""Malformed and hostile requests get a clear 400/413/422 in the documented
shape, name the offending field, store nothing, and are never a 500."""

from __future__ import annotations

import json

import pytest

GOOD_TASK = {"name": "a", "type": "noop"}


def workflow(**overrides):
    return {"name": "wf", "tasks": [GOOD_TASK], **overrides}


def total(api) -> int:
    return api.http.get("/api/v1/workflows").json()["total"]


def post_raw(api, content: bytes, content_type: str = "application/json"):
    return api.http.post(
        "/api/v1/workflows", content=content, headers={"content-type": content_type}
    )


def assert_error_body(resp, status: int, field: str | None = None, text: str | None = None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status_code"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert body["path"] == "/api/v1/workflows"
    assert body["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in resp.text
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    if text is not None:
        assert text in body["error"], body


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"name": "wf", "tasks": [', "not valid JSON"),
        (b'{"name": "\xff\xfe"}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"name": "wf", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "nested"),
    ],
    ids=["empty", "garbage", "truncated", "non-utf8", "deep-100k", "deep-35"],
)
def test_malformed_bodies_are_400(sqlite_api, content, text):
    before = total(sqlite_api)
    assert_error_body(post_raw(sqlite_api, content), 400, text=text)
    assert total(sqlite_api) == before


def test_oversized_body_is_413(sqlite_api):
    before = total(sqlite_api)
    big = {
        "name": "big",
        "tasks": [{"name": "a", "type": "noop", "payload": {"x": "y" * 2_000_000}}],
    }
    assert_error_body(post_raw(sqlite_api, json.dumps(big).encode()), 413)
    assert total(sqlite_api) == before


def test_oversized_chunked_body_is_413(sqlite_api):
    def chunks():
        yield b'{"name": "big", "tasks": [{"name": "a", "type": "noop", "payload": {"x": "'
        for _ in range(300):
            yield b"y" * 10_000
        yield b'"}}]}'

    resp = sqlite_api.http.post(
        "/api/v1/workflows", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error_body(resp, 413)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tasks": [GOOD_TASK]}, "name"),
        (workflow(name=""), "name"),
        (workflow(name=7), "name"),
        (workflow(tasks=[]), "tasks"),
        (workflow(tasks="nope"), "tasks"),
        (workflow(tasks=[{"type": "noop"}]), "tasks[0].name"),
        (workflow(tasks=[{"name": "a"}]), "tasks[0].type"),
        (workflow(tasks=[{**GOOD_TASK, "max_retries": -1}]), "tasks[0].max_retries"),
        (workflow(tasks=[{**GOOD_TASK, "max_retries": "3"}]), "tasks[0].max_retries"),
        (workflow(tasks=[{**GOOD_TASK, "priority": 1.5}]), "tasks[0].priority"),
        (workflow(tasks=[{**GOOD_TASK, "dependencies": "b"}]), "tasks[0].dependencies"),
        (workflow(tasks=[{**GOOD_TASK, "dependecies": ["b"]}]), "tasks[0].dependecies"),
        (workflow(config={"max_concurrency": 0}), "config.max_concurrency"),
        (workflow(config={"timeout": "soon"}), "config.timeout"),
        (workflow(tasks=[{**GOOD_TASK, "payload": []}]), "tasks[0].payload"),
        (
            workflow(tasks=[{"name": "g", "type": "generic", "payload": {}}]),
            "tasks[0].payload.command",
        ),
        (
            workflow(tasks=[{"name": "s", "type": "sleep", "payload": {"seconds": -1}}]),
            "tasks[0].payload.seconds",
        ),
        ([1, 2, 3], "body"),
    ],
)
def test_invalid_fields_are_422_and_named(sqlite_api, body, field):
    before = total(sqlite_api)
    resp = sqlite_api.http.post("/api/v1/workflows", json=body)
    assert_error_body(resp, 422, field=field)
    assert total(sqlite_api) == before


@pytest.mark.parametrize(
    ("tasks", "field", "text"),
    [
        (
            [{"name": "a", "type": "noop", "dependencies": ["a"]}],
            "tasks[0].dependencies[0]",
            "itself",
        ),
        (
            [
                {"name": "a", "type": "noop", "dependencies": ["b"]},
                {"name": "b", "type": "noop", "dependencies": ["a"]},
            ],
            "tasks[1]",
            "dependency cycle: b -> a -> b",
        ),
        (
            [{"name": "a", "type": "noop", "dependencies": ["ghost"]}],
            "tasks[0].dependencies[0]",
            "ghost",
        ),
        ([{"name": "a", "type": "teleport"}], "tasks[0].type", "teleport"),
        ([GOOD_TASK, GOOD_TASK], "tasks[1].name", "a"),
    ],
    ids=["self-dependency", "cycle", "unknown-dependency", "unknown-type", "duplicate-name"],
)
def test_invalid_graphs_are_400_with_the_reason(sqlite_api, tasks, field, text):
    before = total(sqlite_api)
    resp = sqlite_api.http.post("/api/v1/workflows", json=workflow(tasks=tasks))
    assert_error_body(resp, 400, field=field)
    assert text in json.dumps(resp.json())
    assert total(sqlite_api) == before


def test_wrong_content_type_is_still_parsed_or_rejected_cleanly(sqlite_api):
    resp = post_raw(sqlite_api, b"name=wf", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400


def test_bad_input_never_damages_stored_runs(sqlite_api):
    good = sqlite_api.submit(workflow(name="survivor"))
    for content in (b"{", b"\xff", b"[" * 5000):
        post_raw(sqlite_api, content)
    done = sqlite_api.wait(good["id"])
    assert done["status"] == "completed"
    assert done["name"] == "survivor"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/api/v1/workflows",
            b'{"name": "a\\u0000b", "tasks": [{"name": "a", "type": "noop"}]}',
        ),
        (
            "POST",
            "/api/v1/workflows",
            b'{"name": "ab", "tasks": [{"name": "a", "type": "noop", "payload": {"k\\u0000": 1}}]}',
        ),
        (
            "POST",
            "/api/v1/workflows",
            b'{"name": "ab", "tasks": [{"name": "a", "type": "noop", '
            b'"payload": {"k": ["x\\u0000"]}}]}',
        ),
        (
            "POST",
            "/api/v1/agents",
            b'{"name": "ag", "url": "http://x:1", "description": "\\u0000"}',
        ),
        ("GET", "/api/v1/workflows?name=a%00b", None),
        ("GET", "/api/v1/runs/a%00b", None),
        ("GET", "/api/v1/agents/a%00b", None),
    ],
    ids=["name", "payload-key", "payload-value", "agent", "query", "path", "agent-path"],
)
def test_nul_characters_are_refused_on_both_databases(api, method, path, body):
    # PostgreSQL cannot store or compare U+0000: without the check these were 500s.
    before = api.http.get("/api/v1/workflows").json()["total"]
    resp = api.http.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    assert "NUL" in resp.json()["error"]
    assert resp.json()["request_id"] == resp.headers["x-request-id"]
    assert api.http.get("/api/v1/workflows").json()["total"] == before
