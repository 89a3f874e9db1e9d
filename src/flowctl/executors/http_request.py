"""`http.request`: one HTTP call whose response becomes the step's output.

A 4xx answer is an output, not a failure: the caller asked a question and got
an answer (a condition step can branch on `status_code`). A 5xx answer, a
timeout or a connection error fails the step and may be retried. Every request
carries an `Idempotency-Key` that is the same on every retry of the step, so a
server that honours it does the work once.

The helpers here (client, idempotency header, response to output, transport
errors) are shared with `webhook`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    model_validator,
)

from flowctl.executors.base import Executor, StepContext, StepFailed
from flowctl.security.egress import guarded_client

IDEMPOTENCY_HEADER = "Idempotency-Key"

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


# Seconds; the whole request (connect, send, wait, read) must fit in it.
Timeout = Annotated[float, Field(gt=0, le=3600)]


class HttpRequestPayload(BaseModel):
    # `json` would shadow BaseModel.json, hence the alias.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: HttpUrl
    method: Annotated[Method, BeforeValidator(_upper)] = "GET"
    headers: dict[str, str] = {}
    params: dict[str, str | int | float | bool] = {}
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: Timeout = 30.0
    follow_redirects: bool = False

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestPayload:
        if {"json_body", "body"} <= self.model_fields_set:
            raise ValueError("give either json or body, not both")
        return self


@contextlib.asynccontextmanager
async def http_client(ctx: StepContext) -> AsyncIterator[httpx.AsyncClient]:
    """The worker's shared client, or a client of our own for this one call."""
    if ctx.http is not None:
        yield ctx.http
        return
    async with guarded_client(ctx.egress) as client:
        yield client


def with_idempotency_key(headers: dict[str, str], ctx: StepContext) -> httpx.Headers:
    """`headers` plus the step's Idempotency-Key, unless the user set their own."""
    merged = httpx.Headers(headers)
    merged.setdefault(IDEMPOTENCY_HEADER, ctx.idempotency_key)
    return merged


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """Up to `cap` bytes of the (decompressed) body; the rest is not downloaded."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > cap:
            return bytes(data[:cap]), True
    return bytes(data), False


def _decode_body(response: httpx.Response, raw: bytes, truncated: bool) -> Any:
    """Parsed JSON when the response says it is JSON and it parses, else text."""
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    if not truncated and _is_json(response.headers.get("content-type", "")):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def transport_failure(
    exc: httpx.RequestError | TimeoutError, method: str, url: str, timeout: float
) -> StepFailed:
    """A StepFailed saying what went wrong on the wire; all of these are retryable."""
    target = f"{method} {url}"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return StepFailed(f"timed out after {timeout:g}s: {target}", retryable=True)
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return StepFailed(f"connection refused: {target}", retryable=True)
            cause = cause.__cause__ or cause.__context__
        return StepFailed(f"could not connect: {target}: {exc or type(exc).__name__}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.TooManyRedirects):
        return StepFailed(f"{exc}: {target}", retryable=False)
    return StepFailed(f"request failed: {target}: {exc or type(exc).__name__}", retryable=True)


async def send_request(
    ctx: StepContext,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    timeout: float,
    follow_redirects: bool = False,
    **request: Any,
) -> dict[str, Any]:
    """Sends one request and returns the step output for its response.

    Raises StepFailed for transport errors (no response); a response of any
    status is returned, and the caller decides which statuses fail the step.
    `request` is passed to httpx (`params`, `json`, `content`).
    """
    started = time.monotonic()
    try:
        # httpx's timeout is per phase; the outer one bounds the whole call.
        async with (
            asyncio.timeout(timeout),
            http_client(ctx) as client,
            client.stream(
                method,
                url,
                headers=with_idempotency_key(headers, ctx),
                timeout=httpx.Timeout(timeout),
                follow_redirects=follow_redirects,
                **request,
            ) as response,
        ):
            # Half the output limit: headers and JSON escaping need the rest.
            raw, truncated = await _read_capped(response, max(ctx.max_output_bytes // 2, 0))
    except (httpx.RequestError, TimeoutError) as exc:
        failure = transport_failure(exc, method, url, timeout)
        ctx.log("warning", failure.message)
        raise failure from exc
    elapsed_ms = round((time.monotonic() - started) * 1000)
    ctx.log("info", f"HTTP {response.status_code}", method=method, elapsed_ms=elapsed_ms)
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers),
        "body": _decode_body(response, raw, truncated),
        "body_truncated": truncated,
        "elapsed_ms": elapsed_ms,
    }


def status_failure(output: dict[str, Any], method: str, url: str, *, retryable: bool) -> StepFailed:
    return StepFailed(
        f"HTTP {output['status_code']} from {method} {url}", output=output, retryable=retryable
    )


class HttpRequestExecutor(Executor):
    type_name = "http.request"
    payload_model = HttpRequestPayload

    async def execute(self, ctx: StepContext) -> Any:
        payload: HttpRequestPayload = self.parse_payload(ctx.payload)
        url = str(payload.url)
        request: dict[str, Any] = {"params": payload.params}
        if "json_body" in payload.model_fields_set:
            request["json"] = payload.json_body
        elif payload.body is not None:
            request["content"] = payload.body.encode()
        output = await send_request(
            ctx,
            method=payload.method,
            url=url,
            headers=payload.headers,
            timeout=payload.timeout,
            follow_redirects=payload.follow_redirects,
            **request,
        )
        if output["status_code"] >= 500:
            raise status_failure(output, payload.method, url, retryable=True)
        return output
