"""SQL guards built from the state machine tables: every status-changing UPDATE
in the store carries one, so a row moves only along a legal transition."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, ColumnElement, literal_column

from flowctl.domain.states import RunStatus, StepStatus, run_sources, step_sources
from flowctl.store.schema import runs, step_runs


def step_may_become(
    target: StepStatus, *, only_from: Iterable[StepStatus] | None = None
) -> ColumnElement[bool]:
    """The step's status is one it may leave for `target` (optionally narrowed)."""
    sources = set(step_sources(target))
    if only_from is not None:
        narrowed = set(only_from)
        if not narrowed <= sources:
            raise ValueError(f"{sorted(narrowed - sources)} cannot become {target}")
        sources = narrowed
    return status_in(step_runs.c.status, sources)


def run_may_become(target: RunStatus) -> ColumnElement[bool]:
    return status_in(runs.c.status, run_sources(target))


def status_in(column: Column, statuses: Iterable[StepStatus | RunStatus]) -> ColumnElement[bool]:
    """`column IN ('a', 'b')` with the statuses inlined as constants, not bound:
    these guards go into executemany() batches, where an expanding IN is not
    allowed, and a query planner can match inlined constants against a partial
    index's WHERE (SQLite and PostgreSQL both need that). The values are our
    own enum members, never user input."""
    return column.in_([literal_column(f"'{s.value}'") for s in sorted(statuses)])
