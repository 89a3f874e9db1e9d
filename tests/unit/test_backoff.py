"""Retry policy: exponential growth, the cap, bounded jitter and the retry limit."""

from __future__ import annotations

import dataclasses
import random

import pytest

from flowctl.domain.backoff import RetryPolicy


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 3
    assert policy.initial_delay == 1.0
    assert policy.max_delay == 300.0
    assert policy.backoff_factor == 2.0
    assert policy.jitter == 0.1


def test_policy_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_retries = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"initial_delay": -0.1}, "delays"),
        ({"max_delay": -1}, "delays"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"jitter": -0.01}, "jitter"),
        ({"jitter": 1.01}, "jitter"),
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 0},
        {"initial_delay": 0, "max_delay": 0},
        {"backoff_factor": 1.0},
        {"jitter": 0.0},
        {"jitter": 1.0},
    ],
)
def test_boundary_policies_are_accepted(kwargs: dict) -> None:
    RetryPolicy(**kwargs)


def test_base_delay_grows_by_the_factor() -> None:
    policy = RetryPolicy(initial_delay=1.0, backoff_factor=2.0, max_delay=1000.0)
    assert [policy.base_delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    policy = RetryPolicy(initial_delay=0.5, backoff_factor=3.0, max_delay=1000.0)
    assert [policy.base_delay(n) for n in range(1, 5)] == [0.5, 1.5, 4.5, 13.5]


def test_base_delay_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(initial_delay=1.0, backoff_factor=2.0, max_delay=10.0)
    assert [policy.base_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]


def test_base_delay_never_overflows() -> None:
    policy = RetryPolicy(initial_delay=1.0, backoff_factor=10.0, max_delay=60.0)
    assert policy.base_delay(10_000) == 60.0


def test_initial_delay_above_the_cap_is_capped() -> None:
    assert RetryPolicy(initial_delay=50, max_delay=5).base_delay(1) == 5


def test_factor_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(initial_delay=3.0, backoff_factor=1.0)
    assert {policy.base_delay(n) for n in range(1, 20)} == {3.0}


def test_zero_initial_delay_stays_zero() -> None:
    policy = RetryPolicy(initial_delay=0.0, jitter=0.5)
    assert policy.base_delay(5) == 0.0
    assert policy.delay(5, random.Random(1)) == 0.0


@pytest.mark.parametrize("n", [0, -1])
def test_retry_numbers_start_at_one(n: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().base_delay(n)
    with pytest.raises(ValueError):
        RetryPolicy().delay(n)


def test_no_jitter_means_the_exact_base_delay() -> None:
    policy = RetryPolicy(initial_delay=2.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]


@pytest.mark.parametrize("jitter", [0.1, 0.25, 0.5, 1.0])
def test_jitter_stays_within_bounds(jitter: float) -> None:
    policy = RetryPolicy(initial_delay=2.0, backoff_factor=2.0, max_delay=20.0, jitter=jitter)
    rng = random.Random(12345)
    for n in (1, 2, 3, 4, 5, 6):
        base = policy.base_delay(n)
        samples = [policy.delay(n, rng) for _ in range(500)]
        assert all(base * (1 - jitter) <= d <= base for d in samples), n
        # it really is randomised, and spread over most of the window
        assert len(set(samples)) > 400
        assert max(samples) - min(samples) > 0.8 * base * jitter
        assert max(samples) <= policy.max_delay


def test_jitter_only_shortens_the_delay() -> None:
    policy = RetryPolicy(initial_delay=10.0, jitter=0.2)
    rng = random.Random(7)
    mean = sum(policy.delay(1, rng) for _ in range(2000)) / 2000
    # uniform draw in [8, 10]: mean 9
    assert 8.8 < mean < 9.2


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy(jitter=0.5)
    first = [policy.delay(n, random.Random(99)) for n in range(1, 6)]
    second = [policy.delay(n, random.Random(99)) for n in range(1, 6)]
    assert first == second


def test_delay_without_an_rng_uses_the_module_random() -> None:
    policy = RetryPolicy(initial_delay=4.0, jitter=0.5)
    samples = {policy.delay(1) for _ in range(200)}
    assert all(2.0 <= d <= 4.0 for d in samples)
    assert len(samples) > 1


class _FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_jitter_formula_at_the_extremes() -> None:
    policy = RetryPolicy(initial_delay=10.0, jitter=0.3)
    assert policy.delay(1, _FixedRandom(0.0)) == 10.0
    assert policy.delay(1, _FixedRandom(0.5)) == pytest.approx(8.5)
    assert policy.delay(1, _FixedRandom(0.999999)) == pytest.approx(7.0, abs=1e-4)


@pytest.mark.parametrize(
    ("max_retries", "done", "expected"),
    [
        (3, 0, True),
        (3, 2, True),
        (3, 3, False),
        (3, 4, False),
        (0, 0, False),
        (1, 0, True),
        (1, 1, False),
    ],
)
def test_should_retry(max_retries: int, done: int, expected: bool) -> None:
    assert RetryPolicy(max_retries=max_retries).should_retry(done) is expected


def test_should_retry_allows_exactly_max_retries() -> None:
    policy = RetryPolicy(max_retries=4)
    retries = 0
    while policy.should_retry(retries):
        retries += 1
    assert retries == 4
