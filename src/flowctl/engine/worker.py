"""The worker: claims ready steps, runs them, reports outcomes, keeps leases alive.

One asyncio loop per process runs three cooperating tasks:

- the dispatch loop: each turn is ONE transaction that records every outcome
  gathered since the last turn and claims as many ready steps as there are free
  slots (`queue.complete_and_claim`); it sleeps only when there is nothing to
  report and no reason to believe work is waiting (a wake-up, a timer);
- the heartbeat: renews the leases of running steps; a step whose lease was
  taken away (the run was cancelled, or another worker took over after we
  stalled) is stopped here; when the database cannot be reached, steps whose
  lease would expire before we can renew it are stopped, so two workers never
  run a step's side effects at once for long;
- maintenance: requeues steps with expired leases (a worker died), fails runs
  past their timeout, and sleeps until the next such deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from flowctl.config import Settings
from flowctl.domain.backoff import RetryPolicy
from flowctl.domain.nul import has_nul, without_nul
from flowctl.domain.states import StepStatus
from flowctl.domain.templates import TemplateContext, TemplateError, resolve
from flowctl.engine.errors import Unavailable
from flowctl.engine.wakeups import Wakeups
from flowctl.events import metrics
from flowctl.executors.agent import AgentTarget
from flowctl.executors.base import ExecutorRegistry, StepContext, StepFailed
from flowctl.security.egress import EgressDenied, EgressPolicy, guarded_client
from flowctl.security.secrets import DecryptionFailed
from flowctl.store import queue, runs, workers
from flowctl.store.database import Database, DatabaseUnavailable
from flowctl.store.queue import ClaimedStep, StepOutcome

log = logging.getLogger(__name__)

_NUL_OUTPUT = (
    "output contains U+0000 (a NUL character), which cannot be stored: "
    "encode binary data (e.g. base64) before returning it"
)


@dataclass(slots=True)
class RunningStep:
    claimed: ClaimedStep
    task: asyncio.Task | None = None
    # When our lease runs out if we cannot renew it (local monotonic clock,
    # only used to stop early; the database's clock decides ownership).
    lease_deadline: float = 0.0
    stop_reason: str | None = None  # cancelled | lease_lost | shutdown
    started: float = field(default_factory=time.perf_counter)


class Worker:
    def __init__(
        self,
        db: Database,
        registry: ExecutorRegistry,
        settings: Settings,
        wakeups: Wakeups,
        *,
        worker_id: str | None = None,
        resolve_agent: Callable[[str], Awaitable[AgentTarget | None]] | None = None,
    ):
        self.db = db
        # Looks up a registered agent by name, credentials decrypted (None: no such agent).
        self._resolve_agent = resolve_agent
        self.registry = registry
        self.settings = settings
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.slots = settings.worker_concurrency
        self._egress = EgressPolicy.from_settings(settings)
        self.running: dict[str, RunningStep] = {}
        self._outcomes: list[StepOutcome] = []
        self._wake = asyncio.Event()
        self._maintenance_wake = asyncio.Event()
        self._claim_wanted = True
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._http: httpx.AsyncClient | None = None
        wakeups.subscribe(self.poke, self.interrupt_runs)

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._http = guarded_client(self._egress, follow_redirects=False, timeout=30)
        await self._retrying(
            workers.register_worker,
            self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.slots,
        )
        if self.db.is_sqlite:
            # The data-dir lock proves we are the only process: whatever was
            # running belonged to one that died. Take it back now, not after a
            # TTL, and before our own dispatcher claims anything (else we would
            # requeue steps we had just claimed ourselves).
            recovered = await self._retrying(queue.recover_orphaned_steps)
            if recovered:
                log.warning(
                    "requeued %d step(s) left running by a previous process", len(recovered)
                )
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="flowctl-dispatch"),
            asyncio.create_task(self._heartbeat_loop(), name="flowctl-heartbeat"),
            asyncio.create_task(self._maintenance_loop(), name="flowctl-maintenance"),
        ]
        log.info("worker %s started with %d slots", self.id, self.slots)

    async def stop(self) -> None:
        """Stop claiming; give running steps `shutdown_grace` seconds, then hand
        the rest back to the queue so another worker can take them at once."""
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + self.settings.shutdown_grace
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for step in list(self.running.values()):
            self._stop_step(step, "shutdown")
        while self.running:
            await asyncio.sleep(0.01)
        self._wake.set()
        dispatch = self._tasks[0] if self._tasks else None
        if dispatch is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(dispatch), timeout=5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in self._timers:
            timer.cancel()
        with contextlib.suppress(DatabaseUnavailable):
            await self.db.write(workers.stop_worker, self.id)
        if self._http is not None:
            await self._http.aclose()
        log.info("worker %s stopped", self.id)

    def poke(self) -> None:
        """Work may be ready: claim on the next turn."""
        self._claim_wanted = True
        self._wake.set()

    def interrupt_runs(self, run_ids: Iterable[str]) -> None:
        """These runs were cancelled or failed: stop their steps running here."""
        wanted = set(run_ids)
        for step in list(self.running.values()):
            if step.claimed.run_id in wanted:
                self._stop_step(step, "cancelled")
        self._maintenance_wake.set()

    def _stop_step(self, step: RunningStep, reason: str) -> None:
        if step.stop_reason is None and step.task is not None:
            step.stop_reason = reason
            step.task.cancel()

    def _after(self, delay: float, callback) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled()]
        # A few ms late rather than early: the database clock decides readiness.
        self._timers.append(loop.call_later(max(0.0, delay) + 0.005, callback))

    # --- dispatch --------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        failures = 0
        while True:
            if self._stopping and not self._outcomes and not self.running:
                return
            if not self._outcomes and not (self._claim_wanted and not self._stopping):
                self._wake.clear()
                await self._wake.wait()
                continue
            outcomes, self._outcomes = self._outcomes, []
            free = 0 if self._stopping else self.slots - len(self.running)
            claim_limit = free if (self._claim_wanted or outcomes) else 0
            self._claim_wanted = False
            try:
                batch = await self.db.write(
                    queue.complete_and_claim,
                    self.id,
                    outcomes,
                    claim_limit,
                    self.settings.lease_ttl,
                )
            except DatabaseUnavailable as exc:
                # Keep the outcomes: they are written once the database is back,
                # unless our leases lapsed meanwhile (then fencing drops them).
                self._outcomes[:0] = outcomes
                self._claim_wanted = self._claim_wanted or claim_limit > 0
                failures += 1
                delay = min(0.1 * 2**failures, 2.0)
                log.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:
                log.exception("dispatch transaction failed")
                self._claim_wanted = self._claim_wanted or claim_limit > 0
                # One outcome the database refuses (a value it cannot store)
                # must not hold back every other: record them one by one.
                unwritten = await self._record_one_by_one(outcomes)
                self._outcomes[:0] = unwritten
                if unwritten or not outcomes:
                    failures += 1
                    await asyncio.sleep(min(0.1 * 2**failures, 2.0))
                continue
            failures = 0
            self._after_batch(outcomes, batch)

    def _after_batch(self, outcomes: list[StepOutcome], batch: queue.Batch) -> None:
        self._note_batch(outcomes, batch)
        for claimed in batch.claimed:
            self._start_step(claimed)
        if batch.more_ready:
            self._claim_wanted = True
        if batch.next_retry_in is not None:
            self._after(batch.next_retry_in, self.poke)
        if batch.next_deadline_in is not None:
            self._after(batch.next_deadline_in, self._maintenance_wake.set)
        if batch.interrupt_runs:
            self.interrupt_runs(batch.interrupt_runs)

    async def _record_one_by_one(self, outcomes: list[StepOutcome]) -> list[StepOutcome]:
        """Write each outcome in its own transaction; one the database refuses is
        written as a failure of its step (without output, input or logs). Returns
        the outcomes that could not be written even so (the database itself is
        failing: they are kept and tried again)."""
        unwritten: list[StepOutcome] = []
        for index, outcome in enumerate(outcomes):
            try:
                batch = await self.db.write(
                    queue.complete_and_claim, self.id, [outcome], 0, self.settings.lease_ttl
                )
            except DatabaseUnavailable:
                return [*unwritten, *outcomes[index:]]
            except Exception as exc:
                log.error("step %s: its outcome cannot be recorded: %s", outcome.step_id, exc)
                fallback = dataclasses.replace(
                    outcome,
                    status=StepStatus.FAILED,
                    output=None,
                    input=None,
                    logs=[],
                    error=f"flowctl could not record this step's result: {type(exc).__name__}",
                )
                try:
                    batch = await self.db.write(
                        queue.complete_and_claim, self.id, [fallback], 0, self.settings.lease_ttl
                    )
                except Exception:
                    log.exception("step %s: not even its failure can be recorded", outcome.step_id)
                    unwritten.append(outcome)
                    continue
                outcome = fallback
            self._after_batch([outcome], batch)
        return unwritten

    def _note_batch(self, outcomes: list[StepOutcome], batch: queue.Batch) -> None:
        if batch.rejected:
            log.info("dropped %d stale outcome(s): lease lost or run ended", len(batch.rejected))
        rejected = set(batch.rejected)
        for outcome in outcomes:
            if outcome.step_id in rejected:
                continue
            metrics.STEPS_FINISHED.labels(status=outcome.status.value).inc()
            if outcome.duration_ms is not None and outcome.status != StepStatus.PENDING:
                metrics.STEP_DURATION.observe(outcome.duration_ms / 1000)

    def _start_step(self, claimed: ClaimedStep) -> None:
        step = RunningStep(claimed, lease_deadline=time.monotonic() + self.settings.lease_ttl)
        self.running[claimed.id] = step
        step.task = asyncio.create_task(self._execute(step), name=f"step-{claimed.id}")

    # --- running one step -----------------------------------------------------

    async def _execute(self, step: RunningStep) -> None:
        claimed = step.claimed
        ctx = StepContext(
            run_id=claimed.run_id,
            step_id=claimed.id,
            step_name=claimed.name,
            step_type=claimed.type,
            attempt=claimed.retry_count + 1,
            payload=claimed.payload,
            workflow_input=claimed.workflow_input,
            timeout=claimed.timeout_s,
            http=self._http,
            egress=self._egress,
            max_output_bytes=self.settings.max_output_bytes,
            checkpoint=dict(claimed.checkpoint or {}),
        )
        outcome: StepOutcome | None
        try:
            if claimed.has_templates:
                context = TemplateContext(
                    workflow_input=claimed.workflow_input or {},
                    step_outputs=claimed.upstream_outputs,
                )
                ctx.payload = resolve(claimed.payload, context)
            if claimed.type not in self.registry:
                raise StepFailed(f"no executor for step type '{claimed.type}'", retryable=False)
            executor = self.registry.get(claimed.type)
            if claimed.agent is not None:
                ctx.agent = await self._agent_target(claimed.agent)
            ctx.save_checkpoint = functools.partial(self._save_checkpoint, claimed, ctx)
            async with asyncio.timeout(claimed.timeout_s):
                output = await executor.execute(ctx)
            outcome = self._completed(step, ctx, output)
        except asyncio.CancelledError:
            # We cancelled it. After a run cancel or a lost lease the database
            # already says what happened; on shutdown we hand the step back.
            outcome = None
            if step.stop_reason == "shutdown":
                outcome = self._outcome(step, ctx, StepStatus.PENDING)
        except TimeoutError:
            outcome = self._failed(step, ctx, f"step timed out after {claimed.timeout_s:g}s", None)
        except StepFailed as exc:
            outcome = self._failed(step, ctx, exc.message, exc.output, retryable=exc.retryable)
        except TemplateError as exc:
            outcome = self._failed(step, ctx, f"input: {exc}", None, retryable=False)
        except EgressDenied as exc:
            outcome = self._failed(step, ctx, str(exc), None, retryable=False)
        except Exception as exc:  # an executor bug: record it on the step, keep the worker
            log.exception("step %s (%s) raised", claimed.id, claimed.type)
            outcome = self._failed(step, ctx, f"{type(exc).__name__}: {exc}", None)
        finally:
            self.running.pop(claimed.id, None)
        if outcome is not None:
            self._outcomes.append(outcome)
            self._wake.set()

    async def _agent_target(self, name: str) -> AgentTarget:
        """The registered agent an `agent` step calls, or why it cannot be called."""
        if self._resolve_agent is None:
            raise StepFailed("agent steps are not available in this process", retryable=False)
        try:
            target = await self._resolve_agent(name)
        except (DatabaseUnavailable, Unavailable) as exc:
            raise StepFailed(f"could not look up agent '{name}': {exc}") from exc
        except DecryptionFailed as exc:
            raise StepFailed(f"agent '{name}': {exc}", retryable=False) from exc
        if target is None:
            raise StepFailed(f"agent '{name}' is not registered (or was deleted)", retryable=False)
        return target

    async def _save_checkpoint(self, claimed: ClaimedStep, ctx: StepContext) -> None:
        """Commit an executor's progress (e.g. a remote task id) with the step, so a
        worker that takes the step over after a crash resumes instead of starting over."""
        held = await self.db.write(
            queue.save_checkpoint, self.id, claimed.id, claimed.lease_epoch, dict(ctx.checkpoint)
        )
        if not held:
            log.info("step %s: lease lost before its checkpoint was saved", claimed.id)

    def _outcome(
        self, step: RunningStep, ctx: StepContext, status: StepStatus, **fields: Any
    ) -> StepOutcome:
        claimed = step.claimed
        ended = time.perf_counter()
        return StepOutcome(
            step_id=claimed.id,
            run_id=claimed.run_id,
            step_name=claimed.name,
            lease_epoch=claimed.lease_epoch,
            status=status,
            input=ctx.payload if claimed.has_templates else None,
            dependents=claimed.dependents,
            attempt=ctx.attempt,
            duration_ms=(ended - step.started) * 1000,
            ended=ended,
            started_at=claimed.started_at,
            # Diagnostics are kept whatever they hold (see domain/nul.py).
            logs=[
                (line.level, without_nul(line.message), without_nul(line.data)) for line in ctx.logs
            ],
            **fields,
        )

    def _completed(self, step: RunningStep, ctx: StepContext, output: Any) -> StepOutcome:
        try:
            encoded = orjson.dumps(output)
        except TypeError as exc:
            return self._failed(step, ctx, f"output is not JSON: {exc}", None, retryable=False)
        if len(encoded) > self.settings.max_output_bytes:
            return self._failed(
                step,
                ctx,
                f"output is {len(encoded)} bytes; the limit is {self.settings.max_output_bytes}",
                None,
                retryable=False,
            )
        if b"\\u0000" in encoded and has_nul(output):
            return self._failed(step, ctx, _NUL_OUTPUT, None, retryable=False)
        return self._outcome(step, ctx, StepStatus.COMPLETED, output=output)

    def _failed(
        self,
        step: RunningStep,
        ctx: StepContext,
        message: str,
        output: Any,
        *,
        retryable: bool = True,
    ) -> StepOutcome:
        claimed = step.claimed
        policy = RetryPolicy(max_retries=claimed.max_retries, **claimed.retry_policy)
        if output is not None:
            try:
                if len(orjson.dumps(output)) > self.settings.max_output_bytes or has_nul(output):
                    output = None
            except TypeError:
                output = None
        message = without_nul(message)
        if retryable and policy.should_retry(claimed.retry_count):
            delay = policy.delay(claimed.retry_count + 1)
            return self._outcome(
                step, ctx, StepStatus.RETRYING, output=output, error=message, retry_delay=delay
            )
        return self._outcome(step, ctx, StepStatus.FAILED, output=output, error=message)

    # --- leases ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            leases = {
                step_id: step.claimed.lease_epoch
                for step_id, step in self.running.items()
                if step.stop_reason is None
            }
            sent_at = time.monotonic()
            try:
                kept = await self.db.write(
                    queue.renew_leases, self.id, leases, self.settings.lease_ttl
                )
                await self.db.write(workers.heartbeat_worker, self.id, len(self.running))
            except DatabaseUnavailable as exc:
                log.warning("cannot renew leases (%s)", exc)
                self._stop_steps_about_to_lapse(margin=interval + 0.5)
                interval = min(self.settings.heartbeat_interval, 0.5)
                continue
            except Exception:
                log.exception("lease renewal failed")
                continue
            interval = self.settings.heartbeat_interval
            for step_id in leases:
                step = self.running.get(step_id)
                if step is None or step.claimed.lease_epoch != leases[step_id]:
                    continue
                if step_id in kept:
                    step.lease_deadline = sent_at + self.settings.lease_ttl
                else:
                    # Cancelled, or another worker owns it now: stop our copy.
                    self._stop_step(step, "lease_lost")

    def _stop_steps_about_to_lapse(self, margin: float) -> None:
        now = time.monotonic()
        for step in list(self.running.values()):
            if step.lease_deadline - now < margin:
                log.warning("stopping step %s: its lease cannot be renewed", step.claimed.id)
                self._stop_step(step, "lease_lost")

    # --- maintenance -----------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        interval = self.settings.maintenance_interval
        while True:
            try:
                expired = await self.db.write(queue.expire_stale_leases)
                timed_out = await self.db.write(runs.fail_timed_out_runs)
                timers = await self.db.read(queue.next_timers)
            except DatabaseUnavailable as exc:
                log.warning("maintenance skipped: database unavailable (%s)", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("maintenance failed")
                await asyncio.sleep(interval)
                continue
            if expired:
                log.warning("requeued %d step(s) whose lease expired", len(expired))
                self.poke()
            if timed_out:
                self.interrupt_runs(timed_out)
            if timers.next_retry_in is not None:
                self._after(timers.next_retry_in, self.poke)
            candidates = [interval, timers.next_lease_expiry_in, timers.next_deadline_in]
            delay = min(t for t in candidates if t is not None) + 0.01
            self._maintenance_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._maintenance_wake.wait(), timeout=max(delay, 0.01))

    async def _retrying(self, fn, *args, **kwargs):
        delay = 0.2
        while True:
            try:
                return await self.db.write(fn, *args, **kwargs)
            except DatabaseUnavailable as exc:
                log.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
