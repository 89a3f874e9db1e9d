"""Retry policy and exponential backoff with bounded jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a step is retried.

    `max_retries` counts retries after the first attempt (FlowCtl's `max_retries`;
    a `retry_policy.max_attempts` of N means N - 1 retries).
    """

    max_retries: int = 3
    initial_delay: float = 1.0
    max_delay: float = 300.0
    backoff_factor: float = 2.0
    # Fraction of the delay that is randomised downwards, so that many steps
    # failing together do not retry in lockstep. 0 disables jitter.
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")
        if self.backoff_factor < 1.0:
            raise ValueError("backoff_factor must be >= 1.0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def base_delay(self, retry_number: int) -> float:
        """Delay before retry number `retry_number` (1-based), without jitter."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        # Cap the exponent's effect before it overflows a float.
        delay = self.initial_delay
        for _ in range(retry_number - 1):
            delay *= self.backoff_factor
            if delay >= self.max_delay:
                return self.max_delay
        return min(delay, self.max_delay)

    def delay(self, retry_number: int, rand: random.Random | None = None) -> float:
        """Delay before retry `retry_number`, in [base*(1-jitter), base]."""
        base = self.base_delay(retry_number)
        if not self.jitter or not base:
            return base
        draw = (rand or random).random()
        return base * (1.0 - self.jitter * draw)

    def should_retry(self, retries_done: int) -> bool:
        """True if a step that has been retried `retries_done` times may retry again."""
        return retries_done < self.max_retries
