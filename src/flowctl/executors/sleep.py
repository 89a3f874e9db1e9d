"""`sleep`: waits `seconds`, then completes. Cancellable at any moment."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowctl.executors.base import Executor, StepContext


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=7 * 24 * 3600)


class SleepExecutor(Executor):
    type_name = "sleep"
    payload_model = SleepPayload

    async def execute(self, ctx: StepContext) -> Any:
        payload = self.parse_payload(ctx.payload)
        await asyncio.sleep(payload.seconds)
        return {"slept": payload.seconds}
