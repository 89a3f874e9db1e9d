"""The `http.request` and `webhook` executors against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from flowctl.executors.base import Executor, StepContext, StepFailed
from flowctl.executors.http_request import HttpRequestExecutor
from flowctl.executors.webhook import WebhookExecutor


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    """Routes: /status/N answers N, /sleep/S waits S seconds, /text and /big
    answer text, /badjson is invalid JSON; anything else echoes the request."""

    server: _Recorder
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(
            Seen(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
        )
        segments = parts.path.strip("/").split("/")
        status, content_type, payload = 200, "application/json", b""
        if segments[0] == "status":
            status = int(segments[1])
            payload = b"" if status == 204 else json.dumps({"status": status}).encode()
        elif segments[0] == "sleep":
            time.sleep(float(segments[1]))
            payload = b"{}"
        elif segments[0] == "text":
            content_type, payload = "text/plain; charset=utf-8", "héllo".encode()
        elif segments[0] == "big":
            content_type, payload = "text/plain", b"x" * 100_000
        elif segments[0] == "badjson":
            payload = b"{not json"
        else:
            payload = json.dumps({"method": self.command, "path": parts.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[Seen]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are part of the tests


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = _Recorder(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.seen)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def ctx_for(payload: dict[str, Any], *, step_type: str, **kwargs: Any) -> StepContext:
    return StepContext(
        run_id="r1",
        step_id="s1",
        step_name="x",
        step_type=step_type,
        attempt=kwargs.pop("attempt", 1),
        payload=payload,
        **kwargs,
    )


def run(executor: Executor, payload: dict[str, Any], **kwargs: Any) -> Any:
    return asyncio.run(executor.execute(ctx_for(payload, step_type=executor.type_name, **kwargs)))


def fail(executor: Executor, payload: dict[str, Any], **kwargs: Any) -> StepFailed:
    with pytest.raises(StepFailed) as info:
        run(executor, payload, **kwargs)
    return info.value


HTTP = HttpRequestExecutor()
HOOK = WebhookExecutor()


# http.request


def test_get_with_params_and_result_fields(server: Server) -> None:
    params = {"a": 1, "flag": True, "s": "x y", "f": 1.5}
    result = run(HTTP, {"url": f"{server.url}/things", "method": "get", "params": params})
    assert result["status_code"] == 200
    assert result["body"] == {"method": "GET", "path": "/things"}
    assert result["body_truncated"] is False
    assert result["headers"]["content-type"] == "application/json"
    assert result["headers"]["x-test"] == "yes"
    assert isinstance(result["elapsed_ms"], int) and result["elapsed_ms"] >= 0
    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.query == {"a": ["1"], "flag": ["true"], "s": ["x y"], "f": ["1.5"]}


def test_post_json(server: Server) -> None:
    document = {"name": "ü", "items": [1, 2, None]}
    payload = {"url": f"{server.url}/create", "method": "POST", "json": document}
    result = run(HTTP, payload)
    assert result["body"] == {"method": "POST", "path": "/create"}
    [seen] = server.seen
    assert seen.json() == document
    assert seen.headers["content-type"] == "application/json"


def test_put_text_body_and_custom_headers(server: Server) -> None:
    payload = {
        "url": f"{server.url}/doc",
        "method": "PUT",
        "body": "plain text",
        "headers": {"Content-Type": "text/plain", "X-Custom": "1"},
    }
    run(HTTP, payload)
    [seen] = server.seen
    assert (seen.method, seen.body) == ("PUT", b"plain text")
    assert seen.headers["content-type"] == "text/plain"
    assert seen.headers["x-custom"] == "1"


def test_head_request(server: Server) -> None:
    result = run(HTTP, {"url": f"{server.url}/x", "method": "HEAD"})
    assert result["status_code"] == 200
    assert result["body"] == ""


def test_idempotency_key_is_stable_across_attempts(server: Server) -> None:
    payload = {"url": f"{server.url}/pay", "method": "POST", "json": {}}
    ctx1 = ctx_for(payload, step_type="http.request", attempt=1)
    ctx2 = ctx_for(payload, step_type="http.request", attempt=2)
    asyncio.run(HTTP.execute(ctx1))
    asyncio.run(HTTP.execute(ctx2))
    keys = [seen.headers["idempotency-key"] for seen in server.seen]
    assert keys == [ctx1.idempotency_key, ctx1.idempotency_key]
    assert ctx1.idempotency_key == "flowctl-r1-s1"


def test_user_idempotency_key_wins(server: Server) -> None:
    run(HTTP, {"url": f"{server.url}/", "headers": {"idempotency-key": "mine"}})
    [seen] = server.seen
    assert seen.headers["idempotency-key"] == "mine"


def test_5xx_fails_retryable_with_output(server: Server) -> None:
    url = f"{server.url}/status/500"
    err = fail(HTTP, {"url": url})
    assert err.message == f"HTTP 500 from GET {url}"
    assert err.retryable is True
    assert err.output["status_code"] == 500
    assert err.output["body"] == {"status": 500}


def test_4xx_is_a_result(server: Server) -> None:
    result = run(HTTP, {"url": f"{server.url}/status/404"})
    assert result["status_code"] == 404
    assert result["body"] == {"status": 404}


def test_text_and_invalid_json_bodies(server: Server) -> None:
    assert run(HTTP, {"url": f"{server.url}/text"})["body"] == "héllo"
    assert run(HTTP, {"url": f"{server.url}/badjson"})["body"] == "{not json"


def test_body_is_capped(server: Server) -> None:
    result = run(HTTP, {"url": f"{server.url}/big"}, max_output_bytes=100)
    assert result["body"] == "x" * 50
    assert result["body_truncated"] is True


def test_connection_refused(closed_port_url: str) -> None:
    err = fail(HTTP, {"url": closed_port_url})
    assert err.message.startswith("connection refused")
    assert closed_port_url in err.message
    assert err.retryable is True


def test_timeout(server: Server) -> None:
    started = time.monotonic()
    err = fail(HTTP, {"url": f"{server.url}/sleep/3", "timeout": 0.2})
    assert time.monotonic() - started < 2
    assert err.message.startswith("timed out after 0.2s")
    assert err.retryable is True


def test_shared_client_is_used_and_left_open(server: Server) -> None:
    async def scenario() -> tuple[Any, bool]:
        async with httpx.AsyncClient(headers={"X-Shared": "1"}) as client:
            ctx = ctx_for({"url": f"{server.url}/"}, step_type="http.request", http=client)
            result = await HTTP.execute(ctx)
            return result, client.is_closed

    result, closed = asyncio.run(scenario())
    assert result["status_code"] == 200
    assert closed is False
    assert server.seen[0].headers["x-shared"] == "1"


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"url": "ftp://example.com/file"}, "payload.url"),
        ({"url": "not a url"}, "payload.url"),
        ({}, "payload.url"),
        ({"url": "https://example.com", "method": "TRACE"}, "payload.method"),
        ({"url": "https://example.com", "timeout": 0}, "payload.timeout"),
        ({"url": "https://example.com", "timeout": 3601}, "payload.timeout"),
        ({"url": "https://example.com", "params": {"a": [1]}}, "payload.params.a"),
        ({"url": "https://example.com", "data": "x"}, "payload.data"),
    ],
)
def test_http_payload_validation(payload: dict[str, Any], loc: str) -> None:
    errors = HTTP.validate_payload(payload)
    assert errors
    # A union (params values) reports one error per member type, under the field.
    assert all(e.loc == loc or e.loc.startswith(f"{loc}.") for e in errors)


def test_json_and_body_are_exclusive() -> None:
    errors = HTTP.validate_payload({"url": "https://example.com", "json": {}, "body": "x"})
    assert [(e.loc, e.message) for e in errors] == [
        ("payload", "Value error, give either json or body, not both")
    ]


def test_http_valid_payloads() -> None:
    assert HTTP.validate_payload({"url": "https://example.com/x", "method": "patch"}) == []
    assert HTTP.validate_payload({"url": "http://localhost:8080", "json": None}) == []
    assert HTTP.type_name == "http.request"
    assert HTTP.runs_code is False


def test_invalid_payload_fails_without_retry() -> None:
    err = fail(HTTP, {"url": "ftp://example.com"})
    assert err.retryable is False
    assert "payload.url" in err.message


# webhook


def test_webhook_posts_json_with_idempotency_key(server: Server) -> None:
    document = {"event": "done", "n": 1}
    payload = {"url": f"{server.url}/hook", "json": document, "headers": {"X-Sig": "s"}}
    result = run(HOOK, payload)
    assert result["status_code"] == 200
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.json() == document
    assert seen.headers["idempotency-key"] == "flowctl-r1-s1"
    assert seen.headers["x-sig"] == "s"


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (400, False), (429, True), (500, True), (503, True)]
)
def test_webhook_non_2xx_fails(server: Server, status: int, retryable: bool) -> None:
    url = f"{server.url}/status/{status}"
    err = fail(HOOK, {"url": url, "json": {}})
    assert err.message == f"HTTP {status} from POST {url}"
    assert err.retryable is retryable
    assert err.output["status_code"] == status


def test_webhook_2xx_other_than_200(server: Server) -> None:
    assert run(HOOK, {"url": f"{server.url}/status/204"})["status_code"] == 204


def test_webhook_connection_refused(closed_port_url: str) -> None:
    err = fail(HOOK, {"url": closed_port_url, "json": {}})
    assert err.message.startswith("connection refused")
    assert err.retryable is True


def test_webhook_timeout(server: Server) -> None:
    err = fail(HOOK, {"url": f"{server.url}/sleep/3", "json": {}, "timeout": 0.2})
    assert err.message.startswith("timed out after 0.2s")


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"url": "ftp://example.com", "json": {}}, "payload.url"),
        ({"json": {}}, "payload.url"),
        ({"url": "https://example.com", "method": "GET"}, "payload.method"),
        ({"url": "https://example.com", "timeout": -1}, "payload.timeout"),
    ],
)
def test_webhook_payload_validation(payload: dict[str, Any], loc: str) -> None:
    assert {e.loc for e in HOOK.validate_payload(payload)} == {loc}


def test_webhook_valid_payload() -> None:
    assert HOOK.validate_payload({"url": "https://example.com/h", "json": [1, 2]}) == []
