"""`http.request` executor (placeholder; being written)."""

from __future__ import annotations

from typing import Any

from flowctl.executors.base import Executor, StepContext, StepFailed


class HttpRequestExecutor(Executor):
    type_name = "http.request"

    async def execute(self, ctx: StepContext) -> Any:
        raise StepFailed("not implemented yet", retryable=False)
