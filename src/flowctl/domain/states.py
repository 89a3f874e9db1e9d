"""Run and step status state machines, as data.

Every status change in flowctl is checked against these tables. The store turns
them into SQL guards (`UPDATE ... WHERE status IN sources_of(target)`), so an
illegal transition cannot happen even when two processes race: the second writer
matches no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class IllegalTransition(ValueError):
    """A status change the state machine does not allow."""


# target <- sources is how the store reads it; source -> targets is how people do.
RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset(
        {RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.RUNNING: frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.COMPLETED: frozenset(),
    # A failed or cancelled run can be retried: it goes back to pending and
    # resumes from its first incomplete step.
    RunStatus.FAILED: frozenset({RunStatus.PENDING}),
    RunStatus.CANCELLED: frozenset({RunStatus.PENDING}),
}

STEP_TRANSITIONS: Mapping[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.CANCELLED, StepStatus.SKIPPED}),
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.COMPLETED,
            StepStatus.FAILED,
            # failed with attempts left, or its lease expired (worker died)
            StepStatus.RETRYING,
            StepStatus.CANCELLED,
            # a graceful worker shutdown hands the step back untouched
            StepStatus.PENDING,
        }
    ),
    StepStatus.RETRYING: frozenset({StepStatus.RUNNING, StepStatus.CANCELLED, StepStatus.FAILED}),
    StepStatus.COMPLETED: frozenset(),
    StepStatus.SKIPPED: frozenset(),
    # Retrying a run resets its failed and cancelled steps.
    StepStatus.FAILED: frozenset({StepStatus.PENDING}),
    StepStatus.CANCELLED: frozenset({StepStatus.PENDING}),
}

TERMINAL_RUN_STATUSES = frozenset(
    s for s in RunStatus if s not in (RunStatus.PENDING, RunStatus.RUNNING)
)
ACTIVE_RUN_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING})
TERMINAL_STEP_STATUSES = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED}
)
# Steps that a worker may claim once their dependencies are done.
CLAIMABLE_STEP_STATUSES = frozenset({StepStatus.PENDING, StepStatus.RETRYING})


def can_transition_run(source: RunStatus, target: RunStatus) -> bool:
    return target in RUN_TRANSITIONS[source]


def can_transition_step(source: StepStatus, target: StepStatus) -> bool:
    return target in STEP_TRANSITIONS[source]


def check_run_transition(source: RunStatus, target: RunStatus) -> None:
    if not can_transition_run(source, target):
        raise IllegalTransition(f"run cannot go from {source} to {target}")


def check_step_transition(source: StepStatus, target: StepStatus) -> None:
    if not can_transition_step(source, target):
        raise IllegalTransition(f"step cannot go from {source} to {target}")


def _sources(table: Mapping, target) -> tuple:
    return tuple(sorted(s for s, targets in table.items() if target in targets))


def run_sources(target: RunStatus) -> tuple[RunStatus, ...]:
    """Statuses from which a run may move to `target` (for SQL guards)."""
    return _sources(RUN_TRANSITIONS, target)


def step_sources(target: StepStatus) -> tuple[StepStatus, ...]:
    """Statuses from which a step may move to `target` (for SQL guards)."""
    return _sources(STEP_TRANSITIONS, target)


def derive_run_status(
    step_counts: Mapping[StepStatus, int] | Iterable[StepStatus],
) -> RunStatus:
    """The one rule that turns step statuses into a run status.

    - any failed step: the run failed;
    - otherwise any cancelled step: the run was cancelled;
    - every step completed or skipped: completed;
    - anything started (running, retrying, or some step finished): running;
    - nothing started yet: pending.
    """
    if not isinstance(step_counts, Mapping):
        counts: dict[StepStatus, int] = {}
        for status in step_counts:
            counts[status] = counts.get(status, 0) + 1
        step_counts = counts
    present = {StepStatus(s) for s, n in step_counts.items() if n > 0}
    if StepStatus.FAILED in present:
        return RunStatus.FAILED
    if StepStatus.CANCELLED in present:
        return RunStatus.CANCELLED
    if not present or present <= {StepStatus.COMPLETED, StepStatus.SKIPPED}:
        return RunStatus.COMPLETED
    if present & {
        StepStatus.RUNNING,
        StepStatus.RETRYING,
        StepStatus.COMPLETED,
        StepStatus.SKIPPED,
    }:
        return RunStatus.RUNNING
    return RunStatus.PENDING
