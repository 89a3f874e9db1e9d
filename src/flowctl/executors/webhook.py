"""`webhook`: POSTs a JSON document to a URL; anything but a 2xx fails the step.

Unlike `http.request`, a webhook is a notification, not a question: a 4xx means
the receiver rejected it and retrying the same document will not help, except
429 (too many requests), which is retried like a 5xx. The Idempotency-Key is
the same on every retry, so a receiver can drop duplicates.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from flowctl.executors.base import Executor, StepContext
from flowctl.executors.http_request import Timeout, send_request, status_failure

_METHOD = "POST"


class WebhookPayload(BaseModel):
    # `json` would shadow BaseModel.json, hence the alias.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: HttpUrl
    json_body: Any = Field(default=None, alias="json")
    headers: dict[str, str] = {}
    timeout: Timeout = 30.0


def _retryable(status_code: int) -> bool:
    return status_code >= 500 or status_code == 429


class WebhookExecutor(Executor):
    type_name = "webhook"
    payload_model = WebhookPayload

    async def execute(self, ctx: StepContext) -> Any:
        payload: WebhookPayload = self.parse_payload(ctx.payload)
        url = str(payload.url)
        output = await send_request(
            ctx,
            method=_METHOD,
            url=url,
            headers=payload.headers,
            timeout=payload.timeout,
            json=payload.json_body,
        )
        status_code = output["status_code"]
        if not 200 <= status_code < 300:
            raise status_failure(output, _METHOD, url, retryable=_retryable(status_code))
        return output
