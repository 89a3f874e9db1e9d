"""The step queue: claiming, completing, renewing and rescuing leases.

`step_runs` is the queue (as in River, Oban, Hatchet). A claim is one
transaction that picks ready steps in priority order and leases them to a
worker: `lease_owner`, `lease_expires_at` (database clock) and `lease_epoch`,
which goes up on every claim and fences out a worker that lost its lease: its
late completion or heartbeat names an old epoch and matches no row.

Lock order, so that concurrent transactions on PostgreSQL cannot deadlock:
runs before steps, each in id order. Claims never wait: they take step rows and
run rows with SKIP LOCKED.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import bindparam, case, func, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from flowctl.domain.states import (
    ACTIVE_RUN_STATUSES,
    CLAIMABLE_STEP_STATUSES,
    RunStatus,
    StepStatus,
)
from flowctl.domain.templates import iter_references
from flowctl.store.clock import db_now, read_now
from flowctl.store.events import append_events, event_row
from flowctl.store.guards import status_in, step_may_become
from flowctl.store.hints import not_via_index
from flowctl.store.notify import CANCEL_CHANNEL, READY_CHANNEL, notify
from flowctl.store.runs import cancel_remaining_steps, settle_runs
from flowctl.store.schema import runs, step_runs

log = logging.getLogger(__name__)

_CLAIMABLE = [s.value for s in CLAIMABLE_STEP_STATUSES]
_ACTIVE_RUNS = [s.value for s in ACTIVE_RUN_STATUSES]


@dataclass(slots=True)
class ClaimedStep:
    id: str
    run_id: str
    name: str
    type: str
    payload: Any
    lease_epoch: int
    retry_count: int
    max_retries: int
    retry_policy: dict[str, Any]
    timeout_s: float | None
    dependents: list[str]
    agent: str | None
    checkpoint: dict[str, Any] | None
    has_templates: bool
    started_at: float  # database time of the lease
    # Filled only for steps whose payload holds ${...}:
    workflow_input: Any = None
    upstream_outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StepOutcome:
    """What a worker reports about a step it ran under a lease."""

    step_id: str
    run_id: str
    step_name: str
    lease_epoch: int
    status: StepStatus  # COMPLETED, FAILED, RETRYING, or PENDING (handed back)
    output: Any = None
    error: str | None = None
    input: Any = None  # the resolved payload
    retry_delay: float = 0.0
    dependents: Sequence[str] = ()
    attempt: int = 1
    duration_ms: float | None = None
    logs: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    # time.perf_counter() when the step ended, in the process that writes the
    # outcome: the step's completed_at is when it ended, not when an outcome
    # that waited for the writer (or for a batch) was recorded.
    ended: float | None = None
    started_at: float | None = None  # ClaimedStep.started_at: `ended` is never placed before it


@dataclass(slots=True)
class Batch:
    """The result of one complete-and-claim transaction."""

    claimed: list[ClaimedStep] = field(default_factory=list)
    accepted: int = 0
    rejected: list[str] = field(default_factory=list)  # fenced-out step ids
    finished_runs: list[tuple[str, RunStatus]] = field(default_factory=list)
    interrupt_runs: list[str] = field(default_factory=list)  # their running steps must stop
    more_ready: bool = False  # ready steps were left for another claim
    next_retry_in: float | None = None  # seconds until the next backoff ends
    next_deadline_in: float | None = None  # seconds until a run just started times out


def complete_and_claim(
    conn: Connection,
    owner: str,
    outcomes: Sequence[StepOutcome],
    claim_limit: int,
    lease_ttl: float,
) -> Batch:
    """Record finished steps, then lease up to `claim_limit` ready ones.

    One transaction for both: a chain's next step is claimed in the same commit
    that completes its predecessor.
    """
    # Before the read: an outcome's end is then never placed earlier than it was.
    read_at = time.perf_counter()
    locked_runs: frozenset[str] = frozenset()
    now: float | None = None
    if outcomes and conn.dialect.name == "postgresql":
        # Lock the runs first (see the module docstring), so a cancel of the
        # same run waits for this transaction or this one for it, never both;
        # the database clock comes with the locks (one round trip for both).
        run_ids = sorted({o.run_id for o in outcomes})
        locked = conn.execute(_LOCK_RUNS_AND_NOW, {"run_ids": run_ids}).all()
        locked_runs = frozenset(run_id for run_id, _ in locked)
        now = float(locked[0].now) if locked else None
    if now is None:
        now = read_now(conn)
    batch = Batch()
    events: list[dict[str, Any]] = []
    # Outputs recorded here, as the database stores them, by (run id, step name).
    recorded: dict[tuple[str, str], Any] = {}
    if outcomes:
        recorded = _apply_outcomes(conn, owner, outcomes, now, read_at, events, batch)
    if claim_limit > 0:
        _claim(conn, owner, claim_limit, lease_ttl, now, events, batch, locked_runs, recorded)
    # Retries scheduled by this batch; the maintenance loop's timers cover the
    # ones other workers scheduled (it wakes at the earliest one).
    delays = [o.retry_delay for o in outcomes if o.status == StepStatus.RETRYING]
    if delays:
        batch.next_retry_in = min(delays)
    append_events(conn, events)
    if batch.more_ready:
        notify(conn, READY_CHANNEL)
    for run_id in batch.interrupt_runs:
        notify(conn, CANCEL_CHANNEL, run_id)
    return batch


# --- completing -----------------------------------------------------------------


# The hot path's statements are built once: building SQLAlchemy expressions
# per call cost more than executing them on SQLite. (FOR UPDATE renders as
# nothing on SQLite, where the single writer is the lock.)
_LOCK_RUNS_AND_NOW = (
    select(runs.c.id, db_now().label("now"))
    .where(runs.c.id.in_(bindparam("run_ids", expanding=True)))
    .order_by(runs.c.id)
    .with_for_update()
)
_HELD = (
    select(step_runs.c.id, step_runs.c.lease_epoch)
    .where(
        step_runs.c.id.in_(bindparam("step_ids", expanding=True)),
        step_runs.c.status == StepStatus.RUNNING.value,
        step_runs.c.lease_owner == bindparam("owner"),
    )
    .order_by(step_runs.c.id)
    .with_for_update()
)
_FENCE = (
    (step_runs.c.id == bindparam("b_id"))
    & (step_runs.c.lease_owner == bindparam("b_owner"))
    & (step_runs.c.lease_epoch == bindparam("b_epoch"))
)
_RELEASED = {
    "lease_owner": None,
    "lease_expires_at": None,
    "updated_at": bindparam("b_now"),
}
_COMPLETE = (
    update(step_runs)
    .where(_FENCE, step_may_become(StepStatus.COMPLETED))
    .values(
        status=StepStatus.COMPLETED.value,
        result=bindparam("b_result", type_=step_runs.c.result.type),
        input=bindparam("b_input", type_=step_runs.c.input.type),
        error=None,
        completed_at=bindparam("b_ended"),
        **_RELEASED,
    )
)
_COMPLETE_ONE = _COMPLETE.returning(step_runs.c.id, step_runs.c.result)
_DEPENDENT_READY = (
    update(step_runs)
    .where(
        step_runs.c.run_id == bindparam("b_run"),
        step_runs.c.name == bindparam("b_name"),
        step_runs.c.status == StepStatus.PENDING.value,
    )
    .values(deps_remaining=step_runs.c.deps_remaining - 1, available_at=bindparam("b_now"))
)


def _apply_outcomes(
    conn: Connection,
    owner: str,
    outcomes: Sequence[StepOutcome],
    now: float,
    read_at: float,
    events: list[dict[str, Any]],
    batch: Batch,
) -> dict[tuple[str, str], Any]:
    """Record outcomes (on PostgreSQL, with their runs already locked).

    `now` is the database's time, read just after `time.perf_counter()` said
    `read_at`. A step's end is placed at `now` minus how long ago it ended, but
    never before its start.

    Returns the outputs of the completions recorded, as the database stores
    them, where that is known without reading them back: SQLite keeps JSON as it
    is written; PostgreSQL's jsonb does not (key order, numbers), and a step must
    see the same input whichever transaction claimed it, so there only what an
    UPDATE returned counts.
    """

    def params(o: StepOutcome, **extra: Any) -> dict[str, Any]:
        return _params(o, b_owner=owner, b_now=now, **extra)

    def ended_at(o: StepOutcome) -> float:
        if o.ended is None:
            return now
        ended = now - max(0.0, read_at - o.ended)
        return ended if o.started_at is None else max(o.started_at, ended)

    def completion(o: StepOutcome) -> dict[str, Any]:
        return params(o, b_result=o.output, b_ended=ended_at(o))

    written: set[str] = set()
    recorded: dict[tuple[str, str], Any] = {}
    if len(outcomes) == 1 and outcomes[0].status == StepStatus.COMPLETED:
        # A chain's hop: the fenced UPDATE itself tells whether we still hold
        # the lease (it matches what _HELD would), one statement instead of two.
        (only,) = outcomes
        row = conn.execute(_COMPLETE_ONE, completion(only)).first()
        held = {only.step_id: only.lease_epoch} if row is not None else {}
        written = set(held)
        if row is not None:
            recorded[(only.run_id, only.step_name)] = row.result
    else:
        held = dict(
            conn.execute(_HELD, {"step_ids": [o.step_id for o in outcomes], "owner": owner}).all()
        )
    by_status: dict[StepStatus, list[StepOutcome]] = defaultdict(list)
    for outcome in outcomes:
        if held.get(outcome.step_id) == outcome.lease_epoch:
            by_status[outcome.status].append(outcome)
        else:
            # Another worker owns this step now, or the run was cancelled:
            # the database already says what happened; this report is stale.
            batch.rejected.append(outcome.step_id)
    batch.accepted = len(outcomes) - len(batch.rejected)
    if not batch.accepted:
        return recorded

    fence = _FENCE
    released = _RELEASED

    done = by_status.get(StepStatus.COMPLETED, [])
    if done:
        unwritten = [o for o in done if o.step_id not in written]
        if unwritten:
            conn.execute(_COMPLETE, [completion(o) for o in unwritten])
            if conn.dialect.name == "sqlite":
                recorded.update({(o.run_id, o.step_name): o.output for o in unwritten})
        ready_params = [
            {"b_run": o.run_id, "b_name": name, "b_now": now} for o in done for name in o.dependents
        ]
        if ready_params:
            conn.execute(_DEPENDENT_READY, ready_params)
        for o in done:
            events.append(_step_event(o, "step.completed", ended_at(o)))

    retrying = by_status.get(StepStatus.RETRYING, [])
    if retrying:
        conn.execute(
            update(step_runs)
            .where(fence, step_may_become(StepStatus.RETRYING))
            .values(
                status=StepStatus.RETRYING.value,
                retry_count=step_runs.c.retry_count + 1,
                result=bindparam("b_result", type_=step_runs.c.result.type),
                input=bindparam("b_input", type_=step_runs.c.input.type),
                error=bindparam("b_error"),
                available_at=now + bindparam("b_delay"),
                **released,
            ),
            [
                params(o, b_result=o.output, b_error=o.error, b_delay=o.retry_delay)
                for o in retrying
            ],
        )
        for o in retrying:
            events.append(
                _step_event(
                    o,
                    "step.retrying",
                    now,
                    level="warning",
                    message=o.error,
                    extra={"retry_in": round(o.retry_delay, 3)},
                )
            )

    failed = by_status.get(StepStatus.FAILED, [])
    if failed:
        conn.execute(
            update(step_runs)
            .where(fence, step_may_become(StepStatus.FAILED))
            .values(
                status=StepStatus.FAILED.value,
                result=bindparam("b_result", type_=step_runs.c.result.type),
                input=bindparam("b_input", type_=step_runs.c.input.type),
                error=bindparam("b_error"),
                completed_at=bindparam("b_ended"),
                **released,
            ),
            [params(o, b_result=o.output, b_error=o.error, b_ended=ended_at(o)) for o in failed],
        )
        for o in failed:
            events.append(
                _step_event(o, "step.failed", ended_at(o), level="error", message=o.error)
            )
        # Fail fast: the run has failed, so nothing else of it should start,
        # and what is still running elsewhere is told to stop.
        for run_id in sorted({o.run_id for o in failed}):
            first = next(o for o in failed if o.run_id == run_id)
            stopped = cancel_remaining_steps(
                conn, run_id, now, events, reason=f"step '{first.step_name}' failed"
            )
            if stopped:
                batch.interrupt_runs.append(run_id)

    handed_back = by_status.get(StepStatus.PENDING, [])
    if handed_back:
        conn.execute(
            update(step_runs)
            .where(fence, step_may_become(StepStatus.PENDING))
            .values(status=StepStatus.PENDING.value, available_at=now, **released),
            [params(o) for o in handed_back],
        )
        for o in handed_back:
            events.append(_step_event(o, "step.released", now, message="worker shutting down"))

    for o in outcomes:
        if o.logs and o.step_id in held:
            for level, message, data in o.logs:
                events.append(
                    event_row(
                        o.run_id,
                        "log",
                        now,
                        step_id=o.step_id,
                        level=level,
                        message=message,
                        data=data,
                    )
                )

    # A run can only have ended if one of its sinks completed or a step failed:
    # the last step to complete in a DAG has no dependents.
    to_settle = {o.run_id for o in done if not o.dependents} | {o.run_id for o in failed}
    if to_settle:
        batch.finished_runs.extend(settle_runs(conn, sorted(to_settle), now, events))
    return recorded


def _params(o: StepOutcome, **extra: Any) -> dict[str, Any]:
    return {"b_id": o.step_id, "b_epoch": o.lease_epoch, "b_input": o.input, **extra}


def _step_event(
    o: StepOutcome,
    type_: str,
    now: float,
    *,
    level: str = "info",
    message: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"step": o.step_name, "attempt": o.attempt}
    if o.duration_ms is not None:
        data["duration_ms"] = round(o.duration_ms, 3)
    if extra:
        data.update(extra)
    return event_row(
        o.run_id, type_, now, step_id=o.step_id, level=level, message=message, data=data
    )


# --- claiming -------------------------------------------------------------------

_running = aliased(step_runs)
_RUNNING_IN_RUN = (
    select(func.count())
    .where(_running.c.run_id == step_runs.c.run_id, _running.c.status == StepStatus.RUNNING.value)
    .scalar_subquery()
)
_CLAIM_COLUMNS = (
    step_runs.c.id,
    step_runs.c.run_id,
    step_runs.c.name,
    step_runs.c.type,
    step_runs.c.payload,
    step_runs.c.lease_epoch,
    step_runs.c.retry_count,
    step_runs.c.max_retries,
    step_runs.c.retry_policy,
    step_runs.c.timeout_s,
    step_runs.c.dependents,
    step_runs.c.agent,
    step_runs.c.checkpoint,
    step_runs.c.has_templates,
)


_CANDIDATES = (
    select(
        step_runs.c.id,
        step_runs.c.run_id,
        runs.c.status.label("run_status"),
        runs.c.max_concurrency,
        _RUNNING_IN_RUN.label("running"),
    )
    .join(runs, runs.c.id == step_runs.c.run_id)
    .where(
        # These two terms match ix_step_runs_ready's WHERE, as constants.
        status_in(step_runs.c.status, CLAIMABLE_STEP_STATUSES),
        step_runs.c.deps_remaining == literal_column("0"),
        step_runs.c.available_at <= bindparam("now"),
        # Not runs' status index: see the note below.
        status_in(not_via_index(runs.c.status), ACTIVE_RUN_STATUSES),
        # Skip runs already at max_concurrency; exact capacity is checked below.
        runs.c.max_concurrency > _RUNNING_IN_RUN,
    )
    .order_by(step_runs.c.priority.desc(), step_runs.c.available_at, step_runs.c.seq)
    .limit(bindparam("limit"))
    # Without statistics SQLite would start from the few active runs and scan
    # every pending step of each (quadratic in a long chain); the ready index
    # yields ready steps in claim order instead, and the LIMIT stops the scan.
)
_CANDIDATES_PG = _CANDIDATES.with_for_update(of=step_runs, skip_locked=True)
# The run row is the mutex for its concurrency budget on PostgreSQL: a run
# another worker is scheduling right now is skipped, not waited for.
_LOCK_RUN_BUDGETS = (
    select(runs.c.id, runs.c.max_concurrency)
    .where(runs.c.id.in_(bindparam("run_ids", expanding=True)))
    .order_by(runs.c.id)
    .with_for_update(skip_locked=True)
)
_RUNNING_BY_RUN = (
    select(step_runs.c.run_id, func.count())
    .where(
        step_runs.c.run_id.in_(bindparam("run_ids", expanding=True)),
        step_runs.c.status == StepStatus.RUNNING.value,
    )
    .group_by(step_runs.c.run_id)
)
# The run's input comes back with the lease of a step whose payload can refer
# to it: a correlated subquery instead of a query of its own.
_WORKFLOW_INPUT = case(
    (
        step_runs.c.has_templates != 0,
        select(runs.c.input).where(runs.c.id == step_runs.c.run_id).scalar_subquery(),
    )
).label("workflow_input")
_LEASE = (
    update(step_runs)
    .where(
        step_runs.c.id.in_(bindparam("step_ids", expanding=True)),
        step_may_become(StepStatus.RUNNING),
        step_runs.c.deps_remaining == 0,
    )
    .values(
        status=StepStatus.RUNNING.value,
        lease_owner=bindparam("owner"),
        lease_epoch=step_runs.c.lease_epoch + 1,
        lease_expires_at=bindparam("expires"),
        # When the lease was taken, not when the transaction began: the same
        # transaction may first have recorded other steps' outcomes.
        started_at=db_now(),
        updated_at=db_now(),
    )
    .returning(*_CLAIM_COLUMNS, step_runs.c.started_at, _WORKFLOW_INPUT)
)
# pending -> running is the run's first claim; settle_runs never needs it.
_START_RUNS = (
    update(runs)
    .where(
        runs.c.id.in_(bindparam("run_ids", expanding=True)),
        runs.c.status == RunStatus.PENDING.value,
    )
    .values(
        status=RunStatus.RUNNING.value,
        started_at=bindparam("now"),
        deadline_at=bindparam("now") + runs.c.timeout_s,
        updated_at=bindparam("now"),
    )
    .returning(runs.c.id, runs.c.timeout_s)
)


def _claim(
    conn: Connection,
    owner: str,
    limit: int,
    lease_ttl: float,
    now: float,
    events: list[dict[str, Any]],
    batch: Batch,
    locked_runs: frozenset[str] = frozenset(),
    recorded: dict[tuple[str, str], Any] | None = None,
) -> None:
    postgres = conn.dialect.name == "postgresql"
    # One more than we take tells us whether work is left.
    candidates = conn.execute(
        _CANDIDATES_PG if postgres else _CANDIDATES, {"now": now, "limit": limit + 1}
    ).all()
    if not candidates:
        return

    run_ids = sorted({c.run_id for c in candidates})
    if postgres and not locked_runs.issuperset(run_ids):
        capacity = dict(conn.execute(_LOCK_RUN_BUDGETS, {"run_ids": run_ids}).all())
        running_now = dict(conn.execute(_RUNNING_BY_RUN, {"run_ids": list(capacity)}).all())
    else:
        # What the candidate query counted is still true: on SQLite there is
        # one writer; on PostgreSQL this transaction already holds these runs'
        # locks (taken to record outcomes), so no one else can claim in them.
        # That is the common case of a chain: complete a step, claim the next.
        capacity = {c.run_id: c.max_concurrency for c in candidates}
        running_now = {c.run_id: c.running for c in candidates}
    pending_runs = {c.run_id for c in candidates if c.run_status == RunStatus.PENDING.value}
    chosen: list[str] = []
    trimmed = False
    for cand in candidates:
        if len(chosen) == limit:
            batch.more_ready = True
            break
        room = capacity.get(cand.run_id, 0) - running_now.get(cand.run_id, 0)
        if room <= 0:
            trimmed = trimmed or cand.run_id in capacity
            continue
        running_now[cand.run_id] = running_now.get(cand.run_id, 0) + 1
        chosen.append(cand.id)
    if not chosen:
        return
    # Capacity trimmed some candidates: others further down may be claimable.
    batch.more_ready = batch.more_ready or trimmed

    rows = conn.execute(
        _LEASE, {"step_ids": chosen, "owner": owner, "expires": now + lease_ttl, "now": now}
    ).all()
    order = {step_id: i for i, step_id in enumerate(chosen)}
    claimed = sorted(
        (
            ClaimedStep(
                id=r.id,
                run_id=r.run_id,
                name=r.name,
                type=r.type,
                payload=r.payload,
                lease_epoch=r.lease_epoch,
                retry_count=r.retry_count,
                max_retries=r.max_retries,
                retry_policy=r.retry_policy,
                timeout_s=r.timeout_s,
                dependents=r.dependents,
                agent=r.agent,
                checkpoint=r.checkpoint,
                has_templates=bool(r.has_templates),
                started_at=r.started_at,
                workflow_input=r.workflow_input,
            )
            for r in rows
        ),
        key=lambda c: order[c.id],
    )
    started_runs = []
    starting = sorted(pending_runs & {c.run_id for c in claimed})
    if starting:
        started_runs = conn.execute(_START_RUNS, {"run_ids": starting, "now": now}).all()
    for run_id, timeout_s in started_runs:
        events.append(event_row(run_id, "run.started", now, data={"status": "running"}))
        if timeout_s is not None:
            soonest = batch.next_deadline_in
            batch.next_deadline_in = timeout_s if soonest is None else min(soonest, timeout_s)
    for c in claimed:
        events.append(
            event_row(
                c.run_id,
                "step.started",
                c.started_at,
                step_id=c.id,
                data={"step": c.name, "attempt": c.retry_count + 1, "worker": owner},
            )
        )
    templated = [c for c in claimed if c.has_templates]
    if templated:
        _load_upstream_outputs(conn, templated, recorded or {})
    batch.claimed.extend(claimed)


_UPSTREAM_OUTPUTS = select(step_runs.c.run_id, step_runs.c.name, step_runs.c.result).where(
    step_runs.c.run_id.in_(bindparam("run_ids", expanding=True)),
    step_runs.c.name.in_(bindparam("names", expanding=True)),
    step_runs.c.status == StepStatus.COMPLETED.value,
)


def _load_upstream_outputs(
    conn: Connection,
    claimed: Sequence[ClaimedStep],
    recorded: dict[tuple[str, str], Any],
) -> None:
    """Fetch the upstream outputs `${steps.<name>...}` in these payloads refer to.

    Outputs this same transaction recorded (a chain: complete a step, claim the
    next) are taken from `recorded` (see _apply_outcomes) rather than read back.
    """
    wanted: list[tuple[ClaimedStep, set[str]]] = []
    for c in claimed:
        # A bad template is reported on the step by the worker, not here.
        with contextlib.suppress(ValueError):
            wanted.append((c, {ref.step for ref in iter_references(c.payload) if ref.step}))
    missing = {(c.run_id, name) for c, names in wanted for name in names} - recorded.keys()
    outputs: dict[tuple[str, str], Any] = {}
    if missing:
        rows = conn.execute(
            _UPSTREAM_OUTPUTS,
            {
                "run_ids": sorted({run_id for run_id, _ in missing}),
                "names": sorted({name for _, name in missing}),
            },
        )
        outputs = {(run_id, name): result for run_id, name, result in rows}
    for c, names in wanted:
        for name in names:
            key = (c.run_id, name)
            if key in recorded:
                # As the database would give it back (JSON types only).
                c.upstream_outputs[name] = orjson.loads(orjson.dumps(recorded[key]))
            elif key in outputs:
                c.upstream_outputs[name] = outputs[key]


# --- leases ---------------------------------------------------------------------


def renew_leases(
    conn: Connection, owner: str, leases: dict[str, int], lease_ttl: float
) -> set[str]:
    """Extend our leases; return the step ids we still hold (owner and epoch match)."""
    if not leases:
        return set()
    now = read_now(conn)
    locked = select(step_runs.c.id).where(
        step_runs.c.id.in_(list(leases)),
        step_runs.c.status == StepStatus.RUNNING.value,
        step_runs.c.lease_owner == owner,
    )
    if conn.dialect.name == "postgresql":
        locked = locked.order_by(step_runs.c.id).with_for_update()
    rows = conn.execute(
        update(step_runs)
        .where(step_runs.c.id.in_(locked.scalar_subquery()))
        .values(lease_expires_at=now + lease_ttl)
        .returning(step_runs.c.id, step_runs.c.lease_epoch)
    ).all()
    return {step_id for step_id, epoch in rows if leases.get(step_id) == epoch}


def save_checkpoint(
    conn: Connection, owner: str, step_id: str, lease_epoch: int, checkpoint: dict[str, Any]
) -> bool:
    """Durably record an executor's progress; False if we no longer hold the lease."""
    result = conn.execute(
        update(step_runs)
        .where(
            step_runs.c.id == step_id,
            step_runs.c.status == StepStatus.RUNNING.value,
            step_runs.c.lease_owner == owner,
            step_runs.c.lease_epoch == lease_epoch,
        )
        .values(checkpoint=checkpoint)
    )
    return result.rowcount == 1


def expire_stale_leases(conn: Connection, *, limit: int = 1000) -> list[str]:
    """The rescuer: steps whose worker stopped renewing go back to the queue.

    A lost lease is not the step's fault, so it does not count as a retry.
    """
    now = read_now(conn)
    stale = (
        select(step_runs.c.id)
        .where(
            step_runs.c.status == StepStatus.RUNNING.value,
            step_runs.c.lease_expires_at < now,
        )
        .order_by(step_runs.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stale = stale.with_for_update(skip_locked=True)
    return _requeue(conn, list(conn.execute(stale).scalars()), now, "lease expired")


def recover_orphaned_steps(conn: Connection) -> list[str]:
    """SQLite only, at startup: the data-dir lock proves no other process is
    alive, so every running step belongs to a process that died."""
    now = read_now(conn)
    ids = list(
        conn.execute(
            select(step_runs.c.id).where(step_runs.c.status == StepStatus.RUNNING.value)
        ).scalars()
    )
    return _requeue(conn, ids, now, "the process that ran it stopped")


def _requeue(conn: Connection, ids: list[str], now: float, why: str) -> list[str]:
    if not ids:
        return []
    rows = conn.execute(
        update(step_runs)
        .where(
            step_runs.c.id.in_(ids),
            step_may_become(StepStatus.RETRYING, only_from=[StepStatus.RUNNING]),
        )
        .values(
            status=StepStatus.RETRYING.value,
            available_at=now,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .returning(step_runs.c.id, step_runs.c.run_id, step_runs.c.name)
    ).all()
    append_events(
        conn,
        [
            event_row(
                r.run_id,
                "step.lease_expired",
                now,
                step_id=r.id,
                level="warning",
                message=f"{why}; the step will run again",
                data={"step": r.name},
            )
            for r in rows
        ],
    )
    if rows:
        notify(conn, READY_CHANNEL)
    return [r.id for r in rows]


@dataclass(slots=True)
class Timers:
    """Seconds from now until the next time-based event, or None."""

    next_retry_in: float | None
    next_lease_expiry_in: float | None
    next_deadline_in: float | None


def next_timers(conn: Connection) -> Timers:
    now = read_now(conn)
    retry, lease, deadline = conn.execute(
        select(
            select(func.min(step_runs.c.available_at))
            .where(step_runs.c.status == StepStatus.RETRYING.value)
            .scalar_subquery(),
            select(func.min(step_runs.c.lease_expires_at))
            .where(step_runs.c.status == StepStatus.RUNNING.value)
            .scalar_subquery(),
            select(func.min(runs.c.deadline_at))
            .where(runs.c.status == RunStatus.RUNNING.value)
            .scalar_subquery(),
        )
    ).one()

    def until(t: float | None) -> float | None:
        return None if t is None else max(0.0, t - now)

    return Timers(until(retry), until(lease), until(deadline))


def queue_depth(conn: Connection) -> int:
    """Steps that could run now if a worker had room."""
    now = read_now(conn)
    return conn.execute(
        select(func.count())
        .select_from(step_runs)
        .where(
            step_runs.c.status.in_(_CLAIMABLE),
            step_runs.c.deps_remaining == 0,
            step_runs.c.available_at <= now,
        )
    ).scalar_one()
