"""Run settings and the per-step retry policy they hand out."""

from __future__ import annotations

import dataclasses

import pytest

from flowctl.domain.backoff import RetryPolicy
from flowctl.domain.runsettings import DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT, RunSettings


def test_defaults() -> None:
    settings = RunSettings()
    assert settings.max_concurrency == DEFAULT_MAX_CONCURRENCY == 10
    assert settings.timeout == DEFAULT_TIMEOUT == 3600.0
    assert settings.retry == RetryPolicy()


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunSettings().max_concurrency = 2  # type: ignore[misc]


def test_no_timeout_is_allowed() -> None:
    assert RunSettings(timeout=None).timeout is None


def test_step_retry_policy_is_the_backoff_without_max_retries() -> None:
    settings = RunSettings(
        retry=RetryPolicy(
            max_retries=7, initial_delay=0.5, max_delay=30.0, backoff_factor=3.0, jitter=0.0
        )
    )
    assert settings.step_retry_policy() == {
        "initial_delay": 0.5,
        "max_delay": 30.0,
        "backoff_factor": 3.0,
        "jitter": 0.0,
    }


def test_step_retry_policy_defaults() -> None:
    assert RunSettings().step_retry_policy() == {
        "initial_delay": 1.0,
        "max_delay": 300.0,
        "backoff_factor": 2.0,
        "jitter": 0.1,
    }


def test_step_retry_policy_rebuilds_a_policy_with_a_step_override() -> None:
    retry = RetryPolicy(max_retries=2, initial_delay=2.0, max_delay=9.0, backoff_factor=1.5)
    stored = RunSettings(retry=retry).step_retry_policy()
    rebuilt = RetryPolicy(max_retries=5, **stored)
    assert rebuilt == dataclasses.replace(retry, max_retries=5)
    assert [rebuilt.base_delay(n) for n in (1, 2, 3, 4)] == [2.0, 3.0, 4.5, 6.75]


def test_step_retry_policy_is_a_fresh_dict() -> None:
    settings = RunSettings()
    first = settings.step_retry_policy()
    first["initial_delay"] = 999
    assert settings.step_retry_policy()["initial_delay"] == 1.0
    assert settings.retry.initial_delay == 1.0
