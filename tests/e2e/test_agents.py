"""Agents (workflow-management-api.md, Agent Management) against a real server,
on SQLite and PostgreSQL: registration, validation, listing, partial update,
soft delete, health checks, and credentials that are never stored or answered
in clear."""

from __future__ import annotations

import asyncio
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flowctl.engine.agents import resolve_row
from flowctl.security.secrets import (
    KEY_FILE_NAME,
    DecryptionFailed,
    SecretBox,
    load_or_create_key_file,
)
from flowctl.store import agents as agent_store
from flowctl.store.database import Database
from flowctl.testing.processes import free_port

AGENTS = "/api/v1/agents"
TOKEN = "secret-token-123"
SPEC_KEYS = {
    "id", "name", "url", "description", "auth_type", "timeout_ms", "retry_config",
    "status", "created_at", "updated_at",
}  # fmt: skip
DEFAULT_RETRY = {
    "max_retries": 3,
    "initial_delay_ms": 1000,
    "max_delay_ms": 30000,
    "backoff_multiplier": 2.0,
}


def unique(prefix: str = "agent") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(api, **fields) -> dict:
    body = {"name": unique(), "url": "http://data-processor:8080", **fields}
    resp = api.http.post(AGENTS, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_error(resp, status: int, field: str | None = None, text: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status_code"] == status and body["error"] == body["detail"]
    assert body["request_id"] == resp.headers["x-request-id"]
    assert body["path"].startswith(AGENTS)
    assert "Traceback" not in resp.text
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    if text is not None:
        assert text in body["detail"], body
    return body


def list_all(api, **params) -> list[dict]:
    items, page = [], 1
    while True:
        body = api.http.get(AGENTS, params={**params, "page": page, "page_size": 100}).json()
        items += body["items"]
        if page >= body["total_pages"]:
            return items
        page += 1


# --- create -------------------------------------------------------------------


def test_create_answers_the_spec_shape_without_the_secret(api):
    name = unique("data-processor")
    body = {
        "name": name,
        "url": "http://data-processor:8080",
        "description": "Processes data transformations",
        "auth_type": "bearer",
        "auth_config": {"token": TOKEN},
        "timeout_ms": 30000,
        "retry_config": DEFAULT_RETRY,
    }
    resp = api.http.post(AGENTS, json=body)
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    assert set(agent) == SPEC_KEYS | {"auth_config"}
    assert TOKEN not in resp.text
    assert agent["auth_config"] == {"token": "****"}
    assert str(uuid.UUID(agent["id"])) == agent["id"]
    assert agent["name"] == name
    assert agent["url"] == "http://data-processor:8080"  # as written, not normalised
    assert agent["description"] == "Processes data transformations"
    assert agent["auth_type"] == "bearer"
    assert agent["timeout_ms"] == 30000
    assert agent["retry_config"] == DEFAULT_RETRY
    assert agent["status"] == "active"
    assert agent["created_at"].endswith("Z") and agent["created_at"] == agent["updated_at"]

    got = api.http.get(f"{AGENTS}/{agent['id']}")
    assert got.status_code == 200 and got.json() == agent and TOKEN not in got.text


def test_create_fills_the_spec_defaults(api):
    name = unique()
    agent = create(api, name=name, timeout_ms=60000, description="Processes data")
    assert agent["auth_type"] == "none" and agent["auth_config"] is None
    assert agent["timeout_ms"] == 60000
    assert agent["retry_config"] == DEFAULT_RETRY
    minimal = create(api)
    assert minimal["timeout_ms"] == 30000 and minimal["description"] is None
    partial_retry = create(api, retry_config={"max_retries": 0, "backoff_multiplier": 1})
    assert partial_retry["retry_config"] == {
        **DEFAULT_RETRY,
        "max_retries": 0,
        "backoff_multiplier": 1.0,
    }


def test_duplicate_name_is_400(api):
    name = unique()
    create(api, name=name)
    resp = api.http.post(AGENTS, json={"name": name, "url": "http://other:1"})
    assert_error(resp, 400, text=f"Agent with name '{name}' already exists")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": " padded "}, "name"),
        ({"name": 7}, "name"),
        ({"url": "ftp://data-processor"}, "url"),
        ({"url": "data-processor:8080"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "http://user:pw@host"}, "url"),
        ({"url": "http://host:99999"}, "url"),
        ({"auth_type": "basic"}, "auth_type"),
        ({"auth_type": "bearer"}, "auth_config.token"),
        ({"auth_type": "bearer", "auth_config": {"token": ""}}, "auth_config.token"),
        ({"auth_type": "bearer", "auth_config": {"token": "t", "x": "y"}}, "auth_config.x"),
        ({"auth_type": "apikey", "auth_config": {"token": "t"}}, "auth_config.key"),
        (
            {"auth_type": "apikey", "auth_config": {"key": "k", "header": "X Bad"}},
            "auth_config.header",
        ),
        ({"auth_config": {"token": "t"}}, "auth_config"),
        ({"auth_type": "bearer", "auth_config": {"token": 5}}, "auth_config.token"),
        ({"timeout_ms": 999}, "timeout_ms"),
        ({"timeout_ms": 300001}, "timeout_ms"),
        ({"timeout_ms": "30000"}, "timeout_ms"),
        ({"timeout_ms": 1500.5}, "timeout_ms"),
        ({"retry_config": {"max_retries": -1}}, "retry_config.max_retries"),
        ({"retry_config": {"max_retries": 11}}, "retry_config.max_retries"),
        ({"retry_config": {"initial_delay_ms": 99}}, "retry_config.initial_delay_ms"),
        ({"retry_config": {"max_delay_ms": 999}}, "retry_config.max_delay_ms"),
        ({"retry_config": {"backoff_multiplier": 0.99}}, "retry_config.backoff_multiplier"),
        (
            {"retry_config": {"initial_delay_ms": 5000, "max_delay_ms": 1000}},
            "retry_config.initial_delay_ms",
        ),
        ({"retry_config": {"max_retry": 1}}, "retry_config.max_retry"),
        ({"status": "inactive"}, "status"),
        ({"unknown": 1}, "unknown"),
    ],
)  # fmt: skip
def test_out_of_range_fields_are_422_naming_the_field(api, fields, field):
    body = {"name": unique(), "url": "http://data-processor:8080", **fields}
    resp = api.http.post(AGENTS, json=body)
    assert_error(resp, 422, field=field)
    assert "secret" not in resp.text and '"t"' not in resp.text
    assert all(a["name"] != body["name"] for a in list_all(api))  # nothing stored


def test_missing_fields_and_bad_bodies(api):
    body = assert_error(api.http.post(AGENTS, json={}), 422)
    assert {"name", "url"} <= {e["field"] for e in body["errors"]}
    assert_error(
        api.http.post(AGENTS, content=b"{nope", headers={"content-type": "application/json"}), 400
    )
    assert_error(api.http.post(AGENTS, json=["a"]), 422)


# --- list, get ------------------------------------------------------------------


def test_list_pages_and_filters(api):
    mine = [create(api)["id"] for _ in range(5)]
    inactive = create(api)["id"]
    assert api.http.put(f"{AGENTS}/{inactive}", json={"status": "inactive"}).status_code == 200
    deleted = create(api)["id"]
    assert api.http.delete(f"{AGENTS}/{deleted}").status_code == 200

    first = api.http.get(AGENTS, params={"page": 1, "page_size": 2}).json()
    assert set(first) >= {"items", "total", "page", "page_size", "total_pages"}
    assert first["page"] == 1 and first["page_size"] == 2 and len(first["items"]) == 2
    total = first["total"]
    assert first["total_pages"] == -(-total // 2)
    seen: list[str] = []
    for page in range(1, first["total_pages"] + 1):
        body = api.http.get(AGENTS, params={"page": page, "page_size": 2}).json()
        assert body["total"] == total
        seen += [a["id"] for a in body["items"]]
    assert len(seen) == len(set(seen)) == total  # every agent once, newest first
    assert set(mine) | {inactive} <= set(seen) and deleted not in seen
    beyond = api.http.get(AGENTS, params={"page": first["total_pages"] + 1, "page_size": 2})
    assert beyond.status_code == 200 and beyond.json()["items"] == []

    default = list_all(api)
    assert {a["status"] for a in default} <= {"active", "inactive"}
    for status, wanted in (("active", mine[0]), ("inactive", inactive), ("deleted", deleted)):
        items = list_all(api, status=status)
        assert {a["status"] for a in items} == {status}
        assert wanted in {a["id"] for a in items}

    assert list(mine[::-1]) == [a for a in (x["id"] for x in default) if a in mine]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"status": "running"}, "status"),
    ],
)
def test_list_query_errors_are_422(api, params, field):
    assert_error(api.http.get(AGENTS, params=params), 422, field=field)


def test_get_unknown_is_404(api):
    missing = str(uuid.uuid4())
    for resp in (
        api.http.get(f"{AGENTS}/{missing}"),
        api.http.put(f"{AGENTS}/{missing}", json={"description": "x"}),
        api.http.delete(f"{AGENTS}/{missing}"),
        api.http.get(f"{AGENTS}/{missing}/health"),
    ):
        assert_error(resp, 404, text=f"Agent with id '{missing}' not found")


# --- update ---------------------------------------------------------------------


def test_partial_update_keeps_the_other_fields(api):
    agent = create(
        api,
        description="before",
        auth_type="bearer",
        auth_config={"token": TOKEN},
        timeout_ms=45000,
        retry_config={"max_retries": 2, "initial_delay_ms": 500, "max_delay_ms": 9000},
    )
    time.sleep(0.01)
    resp = api.http.put(
        f"{AGENTS}/{agent['id']}",
        json={"description": "after", "retry_config": {"max_retries": 5}},
    )
    assert resp.status_code == 200, resp.text
    updated = resp.json()
    assert updated["description"] == "after"
    assert updated["retry_config"] == {
        "max_retries": 5, "initial_delay_ms": 500, "max_delay_ms": 9000, "backoff_multiplier": 2.0,
    }  # fmt: skip
    for key in (
        "id",
        "name",
        "url",
        "auth_type",
        "auth_config",
        "timeout_ms",
        "status",
        "created_at",
    ):
        assert updated[key] == agent[key], key
    assert updated["updated_at"] > agent["updated_at"]
    assert api.http.get(f"{AGENTS}/{agent['id']}").json() == updated

    more = api.http.put(
        f"{AGENTS}/{agent['id']}",
        json={"url": "https://new-url:8443/a2a", "timeout_ms": 60000, "status": "inactive",
              "description": None},
    ).json()  # fmt: skip
    assert more["url"] == "https://new-url:8443/a2a" and more["timeout_ms"] == 60000
    assert more["status"] == "inactive" and more["description"] is None
    assert more["retry_config"]["max_retries"] == 5
    back = api.http.put(f"{AGENTS}/{agent['id']}", json={"status": "active"}).json()
    assert back["status"] == "active"
    same = api.http.put(f"{AGENTS}/{agent['id']}", json={})
    assert same.status_code == 200 and same.json()["url"] == "https://new-url:8443/a2a"


def test_update_auth(api):
    agent = create(api, auth_type="bearer", auth_config={"token": TOKEN})
    url = f"{AGENTS}/{agent['id']}"
    # Switching type without the credentials the new type needs is refused.
    assert_error(api.http.put(url, json={"auth_type": "apikey"}), 422, field="auth_config.key")
    resp = api.http.put(url, json={"auth_type": "apikey", "auth_config": {"key": "new-api-key"}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["auth_config"] == {"key": "****"} and "new-api-key" not in resp.text
    # Credentials alone, for the type already set.
    resp = api.http.put(url, json={"auth_config": {"key": "k2", "header": "X-Agent-Key"}})
    assert resp.json()["auth_config"] == {"header": "****", "key": "****"}
    assert_error(
        api.http.put(url, json={"auth_config": {"token": "t"}}), 422, field="auth_config.key"
    )
    # Type none drops the stored credentials.
    resp = api.http.put(url, json={"auth_type": "none"})
    assert resp.json()["auth_type"] == "none" and resp.json()["auth_config"] is None


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"timeout_ms": 999}, "timeout_ms"),
        ({"timeout_ms": None}, "timeout_ms"),
        ({"url": None}, "url"),
        ({"url": "gopher://x"}, "url"),
        ({"name": ""}, "name"),
        ({"status": "deleted"}, "status"),
        ({"auth_type": "basic"}, "auth_type"),
        ({"retry_config": {"max_retries": 11}}, "retry_config.max_retries"),
        ({"retry_config": {"max_retries": None}}, "retry_config.max_retries"),
        ({"retry_config": {"initial_delay_ms": 40000}}, "retry_config.initial_delay_ms"),
        ({"id": "x"}, "id"),
    ],
)
def test_update_validation_is_422(api, patch, field):
    agent = create(api)
    assert_error(api.http.put(f"{AGENTS}/{agent['id']}", json=patch), 422, field=field)
    assert api.http.get(f"{AGENTS}/{agent['id']}").json() == agent  # unchanged


def test_rename(api):
    taken = create(api)["name"]
    agent = create(api)
    url = f"{AGENTS}/{agent['id']}"
    assert_error(api.http.put(url, json={"name": taken}), 400, text=f"'{taken}' already exists")
    assert api.http.put(url, json={"name": agent["name"]}).status_code == 200  # its own name
    new = unique("renamed")
    assert api.http.put(url, json={"name": new}).json()["name"] == new
    create(api, name=agent["name"])  # the old name is free again


# --- delete ---------------------------------------------------------------------


def test_delete_is_soft(api):
    agent = create(api)
    url = f"{AGENTS}/{agent['id']}"
    resp = api.http.delete(url)
    assert resp.status_code == 200
    assert resp.json() == {"message": f"Agent '{agent['id']}' deleted successfully"}
    got = api.http.get(url)
    assert got.status_code == 200 and got.json()["status"] == "deleted"
    assert got.json()["updated_at"] >= agent["updated_at"]
    assert agent["id"] not in {a["id"] for a in list_all(api)}
    assert agent["id"] in {a["id"] for a in list_all(api, status="deleted")}
    # A deleted agent is read-only, and its name may be registered again.
    assert_error(api.http.delete(url), 409, text="deleted")
    assert_error(api.http.put(url, json={"status": "active"}), 409, text="deleted")
    again = create(api, name=agent["name"])
    assert again["id"] != agent["id"]


# --- health ---------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ok/health":
            self._answer(200, b'{"status": "ok"}')
        elif self.path == "/down/health":
            self._answer(503, b'{"status": "down"}')
        elif self.path == "/slow/health":
            time.sleep(3)
            self._answer(200, b"{}")
        else:
            self._answer(404, b"{}")

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (the timeout case)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_agent() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def health(api, **fields) -> dict:
    agent = create(api, **fields)
    resp = api.http.get(f"{AGENTS}/{agent['id']}/health")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_health_ok(api, fake_agent):
    result = health(api, url=f"{fake_agent}/ok")
    assert result["healthy"] is True and result["status_code"] == 200 and result["error"] is None
    assert isinstance(result["response_time_ms"], float) and 0 <= result["response_time_ms"] < 5000
    assert health(api, url=f"{fake_agent}/ok/")["healthy"] is True  # trailing slash


def test_health_non_2xx(api, fake_agent):
    result = health(api, url=f"{fake_agent}/down")
    assert result["healthy"] is False and result["status_code"] == 503
    assert result["error"] == "HTTP 503" and result["response_time_ms"] is not None


def test_health_connection_refused(api):
    result = health(api, url=f"http://127.0.0.1:{free_port()}")
    assert result == {
        "healthy": False, "status_code": None, "response_time_ms": None, "error": result["error"],
    }  # fmt: skip
    assert "refused" in result["error"].lower()


def test_health_timeout(api, fake_agent):
    started = time.monotonic()
    result = health(api, url=f"{fake_agent}/slow", timeout_ms=1000)
    assert time.monotonic() - started < 2.5
    assert result == {
        "healthy": False,
        "status_code": None,
        "response_time_ms": None,
        "error": "Connection timeout after 1000ms",
    }


# --- at rest --------------------------------------------------------------------


def _server_db_url(api) -> str:
    env = api.server.env
    return env.get("FLOWCTL_DATABASE_URL") or (
        f"sqlite:///{Path(env['FLOWCTL_DATA_DIR']) / 'flowctl.db'}"
    )


def test_credentials_are_encrypted_at_rest(api):
    name = unique("at-rest")
    token = f"tok-{uuid.uuid4().hex}"
    agent = create(api, name=name, auth_type="bearer", auth_config={"token": token})
    data_dir = Path(api.server.env["FLOWCTL_DATA_DIR"])
    key_file = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    async def read():
        db = Database(_server_db_url(api))
        db.open(lock=False)
        try:
            return (
                await db.read(agent_store.get_agent, agent["id"]),
                await db.read(agent_store.get_agents_by_names, [name, "no-such-agent"]),
                await db.read(agent_store.active_agent_names, [name, "no-such-agent"]),
            )
        finally:
            await db.close()

    row, by_name, active = asyncio.run(read())
    assert token not in row["auth_config_encrypted"] and "token" not in row["auth_config_encrypted"]
    assert row["auth_config_keys"] == ["token"]
    assert list(by_name) == [name] and active == {name}
    if not api.server.env.get("FLOWCTL_DATABASE_URL"):  # SQLite: no file holds it in clear
        for path in data_dir.glob("flowctl.db*"):
            assert token.encode() not in path.read_bytes(), path

    # The worker's view: decrypted with the server's key, and only with it.
    resolved = resolve_row(by_name[name], SecretBox([load_or_create_key_file(key_file)]))
    assert resolved.auth_config == {"token": token}
    assert resolved.auth_headers() == {"Authorization": f"Bearer {token}"}
    assert token not in repr(resolved)
    with pytest.raises(DecryptionFailed):
        resolve_row(by_name[name], SecretBox.generate())

    # Deleted agents are not resolved, inactive ones are but are not active.
    api.http.put(f"{AGENTS}/{agent['id']}", json={"status": "inactive"})
    _, by_name, active = asyncio.run(read())
    assert by_name[name]["status"] == "inactive" and active == set()
    api.http.delete(f"{AGENTS}/{agent['id']}")
    _, by_name, active = asyncio.run(read())
    assert by_name == {} and active == set()
