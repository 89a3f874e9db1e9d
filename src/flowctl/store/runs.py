"""Runs and their steps: creation, reads, cancellation, timeouts, and the one
place a run's status is recomputed from its steps (`settle_runs`)."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Double, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update

from flowctl.domain.durations import format_duration
from flowctl.domain.states import (
    ACTIVE_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    RunStatus,
    StepStatus,
    can_transition_run,
    derive_run_status,
)
from flowctl.store.clock import read_now
from flowctl.store.events import append_events, event_row
from flowctl.store.guards import run_may_become, step_may_become
from flowctl.store.notify import CANCEL_CHANNEL, READY_CHANNEL, notify
from flowctl.store.schema import definitions, runs, step_runs

_ACTIVE = [s.value for s in ACTIVE_RUN_STATUSES]


_INSERT_DEFINITION = insert(definitions)
_INSERT_RUN = insert(runs)
_INSERT_STEPS = insert(step_runs)


def create_run(
    conn: Connection,
    run: dict[str, Any],
    steps: Sequence[dict[str, Any]],
    definition: dict[str, Any] | None = None,
) -> float:
    """Insert a run and all its steps (and a one-shot definition) in one go.

    Steps without dependencies are claimable as soon as this commits, so a run
    is never left pending with nothing queued. Returns the creation time;
    `created_rows` turns that and the same `run` and `steps` into the rows as
    stored.
    """
    now = read_now(conn)
    if definition is not None:
        conn.execute(_INSERT_DEFINITION, {**definition, "created_at": now, "updated_at": now})
    conn.execute(_INSERT_RUN, {**run, "created_at": now, "updated_at": now})
    conn.execute(
        _INSERT_STEPS,
        [{**s, "created_at": now, "updated_at": now, "available_at": now} for s in steps],
    )
    append_events(
        conn,
        [event_row(run["id"], "run.created", now, data={"status": RunStatus.PENDING.value})],
    )
    if any(s["deps_remaining"] == 0 for s in steps):
        notify(conn, READY_CHANNEL)
    return now


def _null_row(table: Table) -> dict[str, Any]:
    """Every column of `table` as NULL, in table order: what an insert leaves in
    the columns it does not name (these tables declare no column defaults)."""
    return dict.fromkeys(table.c.keys())


def _float_columns(table: Table, *, set_here: Sequence[str]) -> tuple[str, ...]:
    """The Double columns a caller's row may fill: they read back as floats."""
    return tuple(c.key for c in table.c if isinstance(c.type, Double) and c.key not in set_here)


_RUN_NULLS = _null_row(runs)
_STEP_NULLS = _null_row(step_runs)
_RUN_FLOATS = _float_columns(runs, set_here=("created_at", "updated_at"))
_STEP_FLOATS = _float_columns(step_runs, set_here=("created_at", "updated_at", "available_at"))


def _as_floats(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        value = row[key]
        if value is not None and type(value) is not float:
            row[key] = float(value)
    return row


def created_rows(
    run: dict[str, Any], steps: Sequence[dict[str, Any]], now: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What `get_run_with_steps` returns right after `create_run(run, steps)`
    returned `now`, without reading it back: every column, those the insert did
    not name as None, in column order, steps by seq.

    JSON values are the caller's objects, not copies, and must be what they
    read back as (lists, not tuples).
    """
    run_row = _as_floats({**_RUN_NULLS, **run, "created_at": now, "updated_at": now}, _RUN_FLOATS)
    step_rows = [
        _as_floats(
            {**_STEP_NULLS, **s, "created_at": now, "updated_at": now, "available_at": now},
            _STEP_FLOATS,
        )
        for s in sorted(steps, key=itemgetter("seq"))
    ]
    return run_row, step_rows


# --- reads ------------------------------------------------------------------------


def get_run(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    return dict(row) if row else None


def get_run_steps(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(step_runs).where(step_runs.c.run_id == run_id).order_by(step_runs.c.seq)
    ).mappings()
    return [dict(r) for r in rows]


def get_run_with_steps(
    conn: Connection, run_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    run = get_run(conn, run_id)
    if run is None:
        return None
    return run, get_run_steps(conn, run_id)


def get_step(conn: Connection, step_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(step_runs).where(step_runs.c.id == step_id)).mappings().first()
    return dict(row) if row else None


RUN_SORT_COLUMNS = {
    "created_at": runs.c.created_at,
    "updated_at": runs.c.updated_at,
    "completed_at": runs.c.completed_at,
    "status": runs.c.status,
    "name": runs.c.name,
}


@dataclass(slots=True)
class RunFilter:
    kinds: Sequence[str] | None = None
    statuses: Sequence[str] | None = None
    definition_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    sort_by: str = "created_at"
    descending: bool = True
    offset: int = 0
    limit: int = 20


def list_runs(
    conn: Connection, flt: RunFilter, *, include_steps: bool = False
) -> tuple[list[dict[str, Any]], int]:
    where = []
    if flt.kinds:
        where.append(runs.c.kind.in_(flt.kinds))
    if flt.statuses:
        where.append(runs.c.status.in_(flt.statuses))
    if flt.definition_id:
        where.append(runs.c.definition_id == flt.definition_id)
    if flt.created_after is not None:
        where.append(runs.c.created_at > flt.created_after)
    if flt.created_before is not None:
        where.append(runs.c.created_at < flt.created_before)
    total = conn.execute(select(func.count()).select_from(runs).where(*where)).scalar_one()
    column = RUN_SORT_COLUMNS[flt.sort_by]
    order = [column.desc() if flt.descending else column.asc(), runs.c.id]
    rows = [
        dict(r)
        for r in conn.execute(
            select(runs).where(*where).order_by(*order).offset(flt.offset).limit(flt.limit)
        ).mappings()
    ]
    if include_steps and rows:
        by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for step in conn.execute(
            select(step_runs)
            .where(step_runs.c.run_id.in_([r["id"] for r in rows]))
            .order_by(step_runs.c.run_id, step_runs.c.seq)
        ).mappings():
            by_run[step["run_id"]].append(dict(step))
        for row in rows:
            row["steps"] = by_run.get(row["id"], [])
    return rows, total


def count_by_status(conn: Connection) -> dict[str, dict[str, int]]:
    run_counts = dict(
        conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all()
    )
    step_counts = dict(
        conn.execute(select(step_runs.c.status, func.count()).group_by(step_runs.c.status)).all()
    )
    return {"runs": run_counts, "steps": step_counts}


# --- status changes ---------------------------------------------------------------


def settle_runs(
    conn: Connection,
    run_ids: Sequence[str],
    now: float,
    events: list[dict[str, Any]],
    *,
    error: str | None = None,
) -> list[tuple[str, RunStatus]]:
    """Recompute each run's status from its steps and apply it if it changed.

    This is the only place a run reaches completed, failed or cancelled. Returns
    the runs that moved, with their new status.
    """
    if not run_ids:
        return []
    counts: dict[str, dict[StepStatus, int]] = defaultdict(dict)
    for run_id, status, n in conn.execute(_STEP_COUNTS, {"run_ids": list(run_ids)}):
        counts[run_id][StepStatus(status)] = n
    current = dict(conn.execute(_RUN_STATUSES, {"run_ids": list(run_ids)}).all())
    moved: list[tuple[str, RunStatus]] = []
    for run_id in run_ids:
        if run_id not in current:
            continue
        source = RunStatus(current[run_id])
        target = derive_run_status(counts.get(run_id, {}))
        if target == source or not can_transition_run(source, target):
            continue
        message = error
        if target == RunStatus.FAILED and message is None:
            message = _failed_step_message(conn, run_id)
        if target == RunStatus.RUNNING:
            message = None
        params = {"s_run": run_id, "s_now": now}
        if message is not None:
            params["s_error"] = message
        result = conn.execute(_settle_statement(target, with_error=message is not None), params)
        if result.rowcount:
            moved.append((run_id, target))
            level = "error" if target == RunStatus.FAILED else "info"
            events.append(
                event_row(
                    run_id,
                    f"run.{target.value}",
                    now,
                    level=level,
                    message=message,
                    data={"status": target.value},
                )
            )
    return moved


_STEP_COUNTS = (
    select(step_runs.c.run_id, step_runs.c.status, func.count())
    .where(step_runs.c.run_id.in_(bindparam("run_ids", expanding=True)))
    .group_by(step_runs.c.run_id, step_runs.c.status)
)
_RUN_STATUSES = select(runs.c.id, runs.c.status).where(
    runs.c.id.in_(bindparam("run_ids", expanding=True))
)


@functools.cache
def _settle_statement(target: RunStatus, *, with_error: bool) -> Update:
    """The UPDATE that moves one run to `target`: built once per shape, as
    building it cost more than running it."""
    values: dict[str, Any] = {"status": target.value, "updated_at": bindparam("s_now")}
    if with_error:
        values["error"] = bindparam("s_error")
    if target in TERMINAL_RUN_STATUSES:
        # completed_at is when the run ended, however it ended.
        values["completed_at"] = bindparam("s_now")
    if target == RunStatus.RUNNING:
        values["started_at"] = func.coalesce(runs.c.started_at, bindparam("s_now"))
    return (
        update(runs).where(runs.c.id == bindparam("s_run"), run_may_become(target)).values(values)
    )


def _failed_step_message(conn: Connection, run_id: str) -> str:
    row = conn.execute(
        select(step_runs.c.name, step_runs.c.error)
        .where(step_runs.c.run_id == run_id, step_runs.c.status == StepStatus.FAILED.value)
        .order_by(step_runs.c.completed_at, step_runs.c.seq)
        .limit(1)
    ).first()
    if row is None:
        return "Run failed"
    return f"Step '{row.name}' failed: {row.error or 'unknown error'}"


def cancel_remaining_steps(
    conn: Connection, run_id: str, now: float, events: list[dict[str, Any]], *, reason: str
) -> bool:
    """Cancel every unfinished step of the run. True if some were running: their
    leases are revoked here, and their workers must be told to stop."""
    values = {
        "status": StepStatus.CANCELLED.value,
        "error": f"Cancelled: {reason}",
        "completed_at": now,
        "updated_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    had_running = False
    for among in ((StepStatus.RUNNING,), (StepStatus.PENDING, StepStatus.RETRYING)):
        rows = conn.execute(
            update(step_runs)
            .where(
                step_runs.c.run_id == run_id,
                step_may_become(StepStatus.CANCELLED, only_from=among),
            )
            .values(**values)
            .returning(step_runs.c.id, step_runs.c.name)
        ).all()
        had_running = had_running or (among == (StepStatus.RUNNING,) and bool(rows))
        events.extend(
            event_row(
                run_id,
                "step.cancelled",
                now,
                step_id=row.id,
                message=values["error"],
                data={"step": row.name},
            )
            for row in rows
        )
    return had_running


def _locked_status(conn: Connection, run_id: str) -> str | None:
    """The run's status, its row locked for this transaction on PostgreSQL (on
    SQLite the single writer is the lock): the one way to change a run's status
    by command, so two commands racing make exactly one transition."""
    query = select(runs.c.status).where(runs.c.id == run_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).scalar()


@dataclass(slots=True)
class CancelResult:
    found: bool
    cancelled: bool
    status: str | None  # the run's status after the attempt


def cancel_run(
    conn: Connection,
    run_id: str,
    *,
    by: str | None = None,
    reason: str | None = None,
) -> CancelResult:
    """Cancel a pending or running run: its unfinished steps stop now.

    Exactly one of two racing cancels (or a cancel racing the run's last
    completion) wins; the other sees the run already ended.
    """
    status = _locked_status(conn, run_id)
    if status is None:
        return CancelResult(False, False, None)
    if status not in _ACTIVE:
        return CancelResult(True, False, status)
    now = read_now(conn)
    events: list[dict[str, Any]] = []
    reason_text = reason or "cancelled by user"
    cancel_remaining_steps(conn, run_id, now, events, reason=reason_text)
    run_error = f"Cancelled: {reason}" if reason else "Cancelled"
    result = conn.execute(
        update(runs)
        .where(runs.c.id == run_id, run_may_become(RunStatus.CANCELLED))
        .values(
            status=RunStatus.CANCELLED.value,
            cancelled_at=now,
            cancelled_by=by,
            completed_at=now,
            error=run_error,
            updated_at=now,
        )
    )
    if not result.rowcount:  # pragma: no cover - guarded by the lock above
        return CancelResult(True, False, status)
    events.append(
        event_row(
            run_id,
            "run.cancelled",
            now,
            message=run_error,
            data={"status": RunStatus.CANCELLED.value, "cancelled_by": by},
        )
    )
    append_events(conn, events)
    notify(conn, CANCEL_CHANNEL, run_id)
    return CancelResult(True, True, RunStatus.CANCELLED.value)


def fail_timed_out_runs(conn: Connection, *, limit: int = 100) -> list[str]:
    """Fail running runs past their deadline; their steps stop. Returns their ids."""
    now = read_now(conn)
    query = (
        select(runs.c.id, runs.c.timeout_s)
        .where(runs.c.status == RunStatus.RUNNING.value, runs.c.deadline_at <= now)
        .order_by(runs.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    expired = conn.execute(query).all()
    events: list[dict[str, Any]] = []
    for run_id, timeout_s in expired:
        message = f"Workflow timed out after {format_duration(timeout_s)}"
        # Running steps fail (they were cut off); the rest never ran.
        conn.execute(
            update(step_runs)
            .where(
                step_runs.c.run_id == run_id,
                step_may_become(StepStatus.FAILED, only_from=[StepStatus.RUNNING]),
            )
            .values(
                status=StepStatus.FAILED.value,
                error=message,
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        cancel_remaining_steps(conn, run_id, now, events, reason=message)
        settle_runs(conn, [run_id], now, events, error=message)
        notify(conn, CANCEL_CHANNEL, run_id)
    append_events(conn, events)
    return [run_id for run_id, _ in expired]


@dataclass(slots=True)
class RetryResult:
    found: bool
    retried: bool
    status: str | None  # the run's status before the attempt
    resumed_steps: list[str]  # names of the steps that will run again
    run: dict[str, Any] | None = None  # the run as the retry left it (pending)


def retry_run(conn: Connection, run_id: str, *, by: str | None = None) -> RetryResult:
    """Resume a failed or cancelled run from its first incomplete steps.

    Completed steps keep their outputs and do not run again; every other step
    goes back to pending with a fresh set of attempts, and waits for the
    dependencies that have not completed. The run goes back to pending and is
    claimed (and timed) as if new.
    """
    status = _locked_status(conn, run_id)
    if status is None:
        return RetryResult(False, False, None, [])
    if status not in (RunStatus.FAILED.value, RunStatus.CANCELLED.value):
        return RetryResult(True, False, status, [])
    now = read_now(conn)
    steps = conn.execute(
        select(step_runs.c.id, step_runs.c.name, step_runs.c.status, step_runs.c.dependencies)
        .where(step_runs.c.run_id == run_id)
        .order_by(step_runs.c.seq)
    ).all()
    done = {s.name for s in steps if s.status == StepStatus.COMPLETED.value}
    again = [s for s in steps if s.status in (StepStatus.FAILED.value, StepStatus.CANCELLED.value)]
    for step in again:
        conn.execute(
            update(step_runs)
            .where(
                step_runs.c.id == step.id,
                step_may_become(
                    StepStatus.PENDING, only_from=[StepStatus.FAILED, StepStatus.CANCELLED]
                ),
            )
            .values(
                status=StepStatus.PENDING.value,
                deps_remaining=sum(1 for d in step.dependencies or [] if d not in done),
                retry_count=0,
                error=None,
                result=None,
                input=None,
                checkpoint=None,
                started_at=None,
                completed_at=None,
                available_at=now,
                updated_at=now,
            )
        )
    conn.execute(
        update(runs)
        .where(runs.c.id == run_id, run_may_become(RunStatus.PENDING))
        .values(
            status=RunStatus.PENDING.value,
            error=None,
            completed_at=None,
            cancelled_at=None,
            cancelled_by=None,
            deadline_at=None,
            updated_at=now,
        )
    )
    names = [s.name for s in again]
    append_events(
        conn,
        [
            event_row(
                run_id,
                "run.retried",
                now,
                data={"status": RunStatus.PENDING.value, "by": by, "steps": names},
            )
        ],
    )
    notify(conn, READY_CHANNEL)
    return RetryResult(True, True, status, names, get_run(conn, run_id))
