"""How a run executes: concurrency, timeout and default retry policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flowctl.domain.backoff import RetryPolicy

DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_TIMEOUT = 3600.0  # FlowCtl's "1h"


@dataclass(frozen=True, slots=True)
class RunSettings:
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    timeout: float | None = DEFAULT_TIMEOUT  # seconds from the run's start; None: none
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def step_retry_policy(self) -> dict[str, Any]:
        """The backoff part of the policy, stored with each step (not max_retries,
        which a step may override)."""
        policy = asdict(self.retry)
        policy.pop("max_retries")
        return policy
