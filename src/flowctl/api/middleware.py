"""Per-request context: a request id (X-Request-ID), HTTP metrics, and the last
line of defence that turns an unexpected exception into a clean 500 body."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowctl.api.errors import error_body
from flowctl.events import metrics

log = logging.getLogger(__name__)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _CLIENT_ID.fullmatch(incoming) else f"req-{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started_response = False
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
                # No id, name or filter holds U+0000, and PostgreSQL cannot even
                # compare a string that does: refuse it here, for every route.
                status = 400
                await _send_error(
                    send, scope, request_id, 400, "The URL contains a NUL character (%00)"
                )
                return
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error in %s %s (%s)", scope["method"], scope["path"], request_id
            )
            if started_response:
                raise
            status = 500
            await _send_error(send, scope, request_id, 500, "An unexpected error occurred")
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.API_REQUESTS.labels(scope["method"], template, str(status)).inc()
            metrics.API_REQUEST_DURATION.labels(scope["method"], template).observe(
                time.perf_counter() - began
            )


async def _send_error(send: Send, scope: Scope, request_id: str, status: int, message: str) -> None:
    body = orjson.dumps(error_body(scope["path"], request_id, status, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
