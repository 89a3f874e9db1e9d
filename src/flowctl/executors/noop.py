"""`noop`: completes at once with its payload as output (tests, benchmarks, joins)."""

from __future__ import annotations

from typing import Any

from flowctl.executors.base import Executor, StepContext


class NoopExecutor(Executor):
    type_name = "noop"

    async def execute(self, ctx: StepContext) -> Any:
        return ctx.payload
