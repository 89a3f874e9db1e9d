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
    return _status_in(step_runs.c.status, sources)


def run_may_become(target: RunStatus) -> ColumnElement[bool]:
    return _status_in(runs.c.status, run_sources(target))


def _status_in(column: Column, statuses: Iterable[StepStatus | RunStatus]) -> ColumnElement[bool]:
    # Inlined constants rather than an expanding bind parameter: these guards
    # also go into executemany() batches, where expanding IN is not allowed.
    # The values are our own enum members, never user input.
    return column.in_([literal_column(f"'{s.value}'") for s in sorted(statuses)])
