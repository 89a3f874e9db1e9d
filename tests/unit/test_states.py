"""The run and step state machines, pinned pair by pair."""

from __future__ import annotations

import itertools

import pytest

from flowctl.domain.states import (
    ACTIVE_RUN_STATUSES,
    CLAIMABLE_STEP_STATUSES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    TERMINAL_STEP_STATUSES,
    IllegalTransition,
    RunStatus,
    StepStatus,
    can_transition_run,
    can_transition_step,
    check_run_transition,
    check_step_transition,
    derive_run_status,
    run_sources,
    step_sources,
)

R = RunStatus
S = StepStatus

# The contract, written out independently of the module's tables: a change to
# either side shows up here.
EXPECTED_RUN: set[tuple[RunStatus, RunStatus]] = {
    (R.PENDING, R.RUNNING),
    (R.PENDING, R.COMPLETED),
    (R.PENDING, R.FAILED),
    (R.PENDING, R.CANCELLED),
    (R.RUNNING, R.COMPLETED),
    (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
    # retry of a failed or cancelled run
    (R.FAILED, R.PENDING),
    (R.CANCELLED, R.PENDING),
}

EXPECTED_STEP: set[tuple[StepStatus, StepStatus]] = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.SKIPPED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.RETRYING),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.PENDING),  # graceful worker shutdown hands the step back
    (S.RETRYING, S.RUNNING),
    (S.RETRYING, S.CANCELLED),
    (S.RETRYING, S.FAILED),
    # retry of the run resets failed and cancelled steps
    (S.FAILED, S.PENDING),
    (S.CANCELLED, S.PENDING),
}

ALL_RUN_PAIRS = list(itertools.product(RunStatus, RunStatus))
ALL_STEP_PAIRS = list(itertools.product(StepStatus, StepStatus))


def _ids(pair: tuple) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_status_values_are_the_lower_case_vocabulary() -> None:
    assert [s.value for s in RunStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert {s.value for s in StepStatus} == {
        "pending",
        "running",
        "retrying",
        "completed",
        "failed",
        "cancelled",
        "skipped",
    }


def test_tables_cover_every_status_as_a_source() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    assert set(STEP_TRANSITIONS) == set(StepStatus)


def test_run_table_is_exactly_the_contract() -> None:
    actual = {(src, dst) for src, targets in RUN_TRANSITIONS.items() for dst in targets}
    assert actual == EXPECTED_RUN


def test_step_table_is_exactly_the_contract() -> None:
    actual = {(src, dst) for src, targets in STEP_TRANSITIONS.items() for dst in targets}
    assert actual == EXPECTED_STEP


@pytest.mark.parametrize(
    "pair", [(s, t) for s, targets in RUN_TRANSITIONS.items() for t in sorted(targets)], ids=_ids
)
def test_every_run_transition_in_the_table_is_accepted(pair: tuple[RunStatus, RunStatus]) -> None:
    source, target = pair
    assert can_transition_run(source, target) is True
    check_run_transition(source, target)  # does not raise
    assert source in run_sources(target)


@pytest.mark.parametrize(
    "pair", [(s, t) for s, targets in STEP_TRANSITIONS.items() for t in sorted(targets)], ids=_ids
)
def test_every_step_transition_in_the_table_is_accepted(
    pair: tuple[StepStatus, StepStatus],
) -> None:
    source, target = pair
    assert can_transition_step(source, target) is True
    check_step_transition(source, target)
    assert source in step_sources(target)


@pytest.mark.parametrize("pair", ALL_RUN_PAIRS, ids=_ids)
def test_run_pairs_follow_the_contract(pair: tuple[RunStatus, RunStatus]) -> None:
    source, target = pair
    allowed = pair in EXPECTED_RUN
    assert can_transition_run(source, target) is allowed
    assert (source in run_sources(target)) is allowed
    if allowed:
        check_run_transition(source, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_run_transition(source, target)
        assert f"from {source.value} to {target.value}" in str(info.value)
        assert str(info.value).startswith("run ")


@pytest.mark.parametrize("pair", ALL_STEP_PAIRS, ids=_ids)
def test_step_pairs_follow_the_contract(pair: tuple[StepStatus, StepStatus]) -> None:
    source, target = pair
    allowed = pair in EXPECTED_STEP
    assert can_transition_step(source, target) is allowed
    assert (source in step_sources(target)) is allowed
    if allowed:
        check_step_transition(source, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_step_transition(source, target)
        assert f"from {source.value} to {target.value}" in str(info.value)
        assert str(info.value).startswith("step ")


def test_no_status_transitions_to_itself() -> None:
    assert all(not can_transition_run(s, s) for s in RunStatus)
    assert all(not can_transition_step(s, s) for s in StepStatus)


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


def test_status_sets() -> None:
    assert TERMINAL_RUN_STATUSES == {R.COMPLETED, R.FAILED, R.CANCELLED}
    assert ACTIVE_RUN_STATUSES == {R.PENDING, R.RUNNING}
    assert TERMINAL_RUN_STATUSES.isdisjoint(ACTIVE_RUN_STATUSES)
    assert TERMINAL_RUN_STATUSES | ACTIVE_RUN_STATUSES == set(RunStatus)
    assert TERMINAL_STEP_STATUSES == {S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED}
    assert CLAIMABLE_STEP_STATUSES == {S.PENDING, S.RETRYING}
    assert CLAIMABLE_STEP_STATUSES.isdisjoint(TERMINAL_STEP_STATUSES)


def test_terminal_run_statuses_only_exit_through_retry() -> None:
    assert RUN_TRANSITIONS[R.COMPLETED] == frozenset()
    for status in TERMINAL_RUN_STATUSES - {R.COMPLETED}:
        assert RUN_TRANSITIONS[status] == {R.PENDING}, status


def test_terminal_step_statuses_only_exit_through_retry() -> None:
    assert STEP_TRANSITIONS[S.COMPLETED] == frozenset()
    assert STEP_TRANSITIONS[S.SKIPPED] == frozenset()
    for status in TERMINAL_STEP_STATUSES - {S.COMPLETED, S.SKIPPED}:
        assert STEP_TRANSITIONS[status] == {S.PENDING}, status


def _reachable(table, start) -> set:
    seen, stack = {start}, [start]
    while stack:
        for nxt in table[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_every_status_is_reachable_from_pending() -> None:
    assert _reachable(RUN_TRANSITIONS, R.PENDING) == set(RunStatus)
    assert _reachable(STEP_TRANSITIONS, S.PENDING) == set(StepStatus)


def test_every_non_terminal_status_can_finish() -> None:
    for status in ACTIVE_RUN_STATUSES:
        assert _reachable(RUN_TRANSITIONS, status) & TERMINAL_RUN_STATUSES, status
    for status in set(StepStatus) - TERMINAL_STEP_STATUSES:
        assert _reachable(STEP_TRANSITIONS, status) & TERMINAL_STEP_STATUSES, status


def test_sources_are_sorted_tuples_for_sql_guards() -> None:
    assert run_sources(R.PENDING) == (R.CANCELLED, R.FAILED)
    assert run_sources(R.RUNNING) == (R.PENDING,)
    assert run_sources(R.COMPLETED) == (R.PENDING, R.RUNNING)
    assert step_sources(S.PENDING) == (S.CANCELLED, S.FAILED, S.RUNNING)
    assert step_sources(S.RUNNING) == (S.PENDING, S.RETRYING)
    assert step_sources(S.SKIPPED) == (S.PENDING,)
    assert step_sources(S.FAILED) == (S.RETRYING, S.RUNNING)


# --- derive_run_status ---------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        # failed wins over everything
        ([S.FAILED], R.FAILED),
        ([S.FAILED, S.CANCELLED], R.FAILED),
        ([S.CANCELLED, S.FAILED, S.RUNNING, S.PENDING], R.FAILED),
        ([S.COMPLETED, S.COMPLETED, S.FAILED], R.FAILED),
        ([S.FAILED, S.RETRYING], R.FAILED),
        # then cancelled
        ([S.CANCELLED], R.CANCELLED),
        ([S.CANCELLED, S.RUNNING], R.CANCELLED),
        ([S.CANCELLED, S.COMPLETED, S.SKIPPED], R.CANCELLED),
        ([S.PENDING, S.CANCELLED], R.CANCELLED),
        # every step completed or skipped
        ([S.COMPLETED], R.COMPLETED),
        ([S.COMPLETED, S.SKIPPED], R.COMPLETED),
        ([S.SKIPPED, S.SKIPPED], R.COMPLETED),
        # anything started
        ([S.RUNNING], R.RUNNING),
        ([S.RETRYING, S.PENDING], R.RUNNING),
        ([S.COMPLETED, S.PENDING], R.RUNNING),
        ([S.SKIPPED, S.PENDING], R.RUNNING),
        ([S.COMPLETED, S.RUNNING, S.SKIPPED], R.RUNNING),
        # nothing started
        ([S.PENDING], R.PENDING),
        ([S.PENDING, S.PENDING, S.PENDING], R.PENDING),
    ],
)
def test_derive_run_status_precedence(statuses: list[StepStatus], expected: RunStatus) -> None:
    assert derive_run_status(statuses) == expected
    # the same answer from a count mapping (how the store calls it)
    counts: dict[StepStatus, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    assert derive_run_status(counts) == expected
    # and in reverse order: precedence does not depend on order
    assert derive_run_status(list(reversed(statuses))) == expected


def test_derive_run_status_ignores_zero_counts() -> None:
    assert derive_run_status({S.FAILED: 0, S.CANCELLED: 0, S.PENDING: 2}) == R.PENDING
    assert derive_run_status({S.RUNNING: 0, S.COMPLETED: 3}) == R.COMPLETED


def test_derive_run_status_accepts_plain_strings() -> None:
    # Rows read back from the database carry the string value.
    assert derive_run_status({"failed": 1, "completed": 1}) == R.FAILED  # type: ignore[dict-item]
    assert derive_run_status({"pending": 1, "running": 1}) == R.RUNNING  # type: ignore[dict-item]


def test_derive_run_status_of_no_steps_is_completed() -> None:
    # Vacuously "every step completed"; pinned because the store relies on it.
    assert derive_run_status({}) == R.COMPLETED
    assert derive_run_status([]) == R.COMPLETED


def test_derive_run_status_accepts_a_generator() -> None:
    assert derive_run_status(s for s in (S.PENDING, S.COMPLETED)) == R.RUNNING
