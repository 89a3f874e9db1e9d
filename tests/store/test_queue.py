"""The step queue in the store, on SQLite and PostgreSQL: claims, fencing,
lease expiry and concurrency limits, driven without a worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, update

from flowctl.config import Settings
from flowctl.domain.graph import StepSpec, compile_tasks
from flowctl.domain.runsettings import RunSettings
from flowctl.domain.states import StepStatus
from flowctl.engine.errors import Conflict
from flowctl.engine.service import NewWorkflow, WorkflowService
from flowctl.engine.wakeups import Wakeups
from flowctl.executors.registry import default_registry
from flowctl.store import queue
from flowctl.store.clock import read_now
from flowctl.store.database import Database
from flowctl.store.queue import StepOutcome
from flowctl.store.schema import step_runs


class Store:
    def __init__(self, url: str):
        self.db = Database(url)
        self.service = WorkflowService(self.db, default_registry(), Wakeups(), Settings())

    async def __aenter__(self) -> Store:
        self.db.open()
        await self.db.migrate()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.db.close()

    async def submit(self, *specs: StepSpec, max_concurrency: int = 10, input=None) -> str:
        graph = compile_tasks(list(specs), known_types=self.service.registry.type_names)
        run, _ = await self.service.submit(
            NewWorkflow(
                name="t",
                kind="tasks",
                graph=graph,
                settings=RunSettings(max_concurrency=max_concurrency),
                input=input,
            )
        )
        return run["id"]

    async def claim(self, owner: str, limit: int, ttl: float = 30.0) -> queue.Batch:
        return await self.db.write(queue.complete_and_claim, owner, [], limit, ttl)

    async def report(self, owner: str, outcome: StepOutcome) -> queue.Batch:
        return await self.db.write(queue.complete_and_claim, owner, [outcome], 0, 30.0)

    async def step(self, step_id: str) -> dict:
        return await self.service.get_step(step_id)


def done(claimed: queue.ClaimedStep, output=None) -> StepOutcome:
    return StepOutcome(
        step_id=claimed.id,
        run_id=claimed.run_id,
        step_name=claimed.name,
        lease_epoch=claimed.lease_epoch,
        status=StepStatus.COMPLETED,
        output=output,
        dependents=claimed.dependents,
    )


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'flowctl.db'}"


def run(coro):
    return asyncio.run(coro)


def test_claims_follow_priority_and_respect_max_concurrency(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(
                *(StepSpec(name=f"p{p}", type="noop", priority=p) for p in (1, 5, 3, 4, 2)),
                max_concurrency=2,
            )
            batch = await store.claim("w1", 10)
            assert [c.name for c in batch.claimed] == ["p5", "p4"]
            assert (await store.claim("w2", 10)).claimed == []
            await store.report("w1", done(batch.claimed[0]))
            assert [c.name for c in (await store.claim("w2", 10)).claimed] == ["p3"]

    run(scenario())


def test_a_dependent_is_claimable_only_after_its_dependency_completes(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(
                StepSpec(name="a", type="noop"),
                StepSpec(name="b", type="noop", dependencies=("a",)),
            )
            first = await store.claim("w1", 10)
            assert [c.name for c in first.claimed] == ["a"]
            assert (await store.claim("w1", 10)).claimed == []
            batch = await store.db.write(
                queue.complete_and_claim, "w1", [done(first.claimed[0], {"x": 1})], 10, 30.0
            )
            # Completion and the next claim happen in one transaction.
            assert [c.name for c in batch.claimed] == ["b"]

    run(scenario())


def test_a_claimed_step_comes_with_what_its_templates_refer_to(url):
    """The run input and upstream outputs, whether the upstream step completed
    in the claiming transaction or before it, exactly as stored (key order and
    number types included: PostgreSQL's jsonb changes both)."""

    async def scenario():
        async with Store(url) as store:
            await store.submit(
                StepSpec(name="a", type="noop"),
                StepSpec(name="b", type="noop", dependencies=("a",)),
                StepSpec(
                    name="c",
                    type="noop",
                    dependencies=("b",),
                    payload={
                        "x": "${a.output.n}",
                        "y": "${b.output}",
                        "r": "${workflow.input.region}",
                    },
                ),
                StepSpec(name="d", type="noop", dependencies=("c",), payload={"z": 1}),
                input={"region": "eu", "n": 3},
            )
            a = (await store.claim("w1", 10)).claimed[0]
            assert (a.has_templates, a.workflow_input, a.upstream_outputs) == (False, None, {})
            batch = await store.db.write(
                queue.complete_and_claim, "w1", [done(a, {"n": 7})], 0, 30.0
            )
            b = (await store.claim("w1", 10)).claimed[0]
            # `b` completes and `c` is claimed in one transaction.
            output = {"zz": 1, "a": 2, "f": 1.2345678901234567e19, "m": -0.0, "v": (1, 2.5)}
            batch = await store.db.write(
                queue.complete_and_claim, "w1", [done(b, output)], 10, 30.0
            )
            (c,) = batch.claimed
            assert c.name == "c" and c.has_templates
            assert c.workflow_input == {"region": "eu", "n": 3}
            assert c.upstream_outputs["a"] == {"n": 7}
            stored = (await store.step(b.id))["result"]
            assert orjson.dumps(c.upstream_outputs["b"]) == orjson.dumps(stored)
            assert type(c.upstream_outputs["b"]["v"]) is list
            batch = await store.db.write(
                queue.complete_and_claim, "w1", [done(c, {"ok": True})], 10, 30.0
            )
            (d,) = batch.claimed
            assert (d.has_templates, d.workflow_input, d.upstream_outputs) == (False, None, {})

    run(scenario())


def test_outputs_recorded_in_a_batch_reach_a_templated_step_as_stored(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(
                StepSpec(name="b1", type="noop"),
                StepSpec(name="b2", type="noop"),
                StepSpec(
                    name="c",
                    type="noop",
                    dependencies=("b1", "b2"),
                    payload={"x": "${b1.output}", "y": "${b2.output}"},
                ),
            )
            b1, b2 = sorted((await store.claim("w1", 10)).claimed, key=lambda c: c.name)
            outputs = {"b1": {"zz": 1, "a": -0.0}, "b2": {"f": 1.2345678901234567e19, "v": (1,)}}
            batch = await store.db.write(
                queue.complete_and_claim,
                "w1",
                [done(b1, outputs["b1"]), done(b2, outputs["b2"])],
                10,
                30.0,
            )
            (c,) = batch.claimed
            for upstream in (b1, b2):
                stored = (await store.step(upstream.id))["result"]
                assert orjson.dumps(c.upstream_outputs[upstream.name]) == orjson.dumps(stored)

    run(scenario())


def test_a_step_starts_when_leased_after_the_outcomes_of_its_transaction(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(
                *(StepSpec(name=f"s{i}", type="noop") for i in range(50)),
                StepSpec(name="next", type="noop", dependencies=tuple(f"s{i}" for i in range(50))),
                max_concurrency=100,
            )
            first = (await store.claim("w1", 100)).claimed
            outcomes = [done(c, {"i": i}) for i, c in enumerate(first)]
            batch = await store.db.write(queue.complete_and_claim, "w1", outcomes, 10, 30.0)
            (after,) = batch.claimed
            recorded = await store.step(first[-1].id)  # updated_at: the transaction's start
            leased = await store.step(after.id)
            assert leased["started_at"] > recorded["updated_at"]
            assert after.started_at == leased["started_at"]

    run(scenario())


def test_a_stale_outcome_in_a_claiming_batch_feeds_no_template(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(
                StepSpec(name="b", type="noop"),
                StepSpec(name="c", type="noop", dependencies=("b",), payload={"y": "${b.output}"}),
            )
            stale = (await store.claim("w1", 10)).claimed[0]
            await store.db.write(
                lambda conn: conn.execute(
                    update(step_runs).where(step_runs.c.id == stale.id).values(lease_expires_at=0)
                )
            )
            await store.db.write(queue.expire_stale_leases)
            fresh = (await store.claim("w2", 10)).claimed[0]
            await store.report("w2", done(fresh, {"v": "good"}))
            batch = await store.db.write(
                queue.complete_and_claim, "w1", [done(stale, {"v": "stale"})], 10, 30.0
            )
            assert batch.rejected == [stale.id]
            (c,) = batch.claimed
            assert c.upstream_outputs == {"b": {"v": "good"}}

    run(scenario())


def test_a_step_completed_when_it_ended_not_when_its_outcome_was_written(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(StepSpec(name="a", type="noop"))
            a = (await store.claim("w1", 1)).claimed[0]
            await asyncio.sleep(0.3)
            # The step ended 0.2 s ago; its outcome waited for the writer since.
            outcome = done(a, {"ok": True})
            outcome.ended = time.perf_counter() - 0.2
            await store.report("w1", outcome)
            step = await store.step(a.id)
            db_now = await store.db.read(read_now)
            assert 0.05 < step["completed_at"] - step["started_at"] < 0.2
            assert db_now - step["completed_at"] > 0.2
            # An end reported as before the start is placed at the start.
            await store.submit(StepSpec(name="b", type="noop"))
            b = (await store.claim("w1", 1)).claimed[0]
            outcome = done(b)
            outcome.ended, outcome.started_at = time.perf_counter() - 100, b.started_at
            await store.report("w1", outcome)
            step = await store.step(b.id)
            assert step["completed_at"] == step["started_at"] == b.started_at

    run(scenario())


def test_a_stale_lease_cannot_complete_or_renew(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(StepSpec(name="a", type="noop"))
            stale = (await store.claim("w1", 1, ttl=0.3)).claimed[0]
            await asyncio.sleep(0.5)
            assert await store.db.write(queue.expire_stale_leases) == [stale.id]
            fresh = (await store.claim("w2", 1)).claimed[0]
            assert fresh.id == stale.id and fresh.lease_epoch > stale.lease_epoch
            # The first worker comes back: its heartbeat and result are refused.
            held = await store.db.write(
                queue.renew_leases, "w1", {stale.id: stale.lease_epoch}, 30.0
            )
            assert held == set()
            batch = await store.report("w1", done(stale, {"by": "w1"}))
            assert batch.rejected == [stale.id] and batch.accepted == 0
            await store.report("w2", done(fresh, {"by": "w2"}))
            step = await store.step(stale.id)
            assert step["status"] == "completed" and step["result"] == {"by": "w2"}
            assert step["retry_count"] == 0

    run(scenario())


def test_two_concurrent_claimers_never_share_a_step(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(
                *(StepSpec(name=f"s{i}", type="noop") for i in range(60)), max_concurrency=100
            )
            # On PostgreSQL a claimer skips a run another claimer has locked
            # (SKIP LOCKED) rather than waiting, so it takes several rounds.
            ids: list[str] = []
            for _ in range(30):
                batches = await asyncio.gather(*(store.claim(f"w{i}", 7) for i in range(10)))
                ids += [c.id for b in batches for c in b.claimed]
                if len(ids) >= 60:
                    break
            assert len(ids) == len(set(ids)) == 60

    run(scenario())


def test_leases_are_timed_by_the_database_clock(url):
    async def scenario():
        async with Store(url) as store:
            await store.submit(StepSpec(name="a", type="noop"))
            claimed = (await store.claim("w1", 1, ttl=60)).claimed[0]
            db_now = await store.db.read(read_now)
            row = await store.db.read(
                lambda conn: conn.execute(
                    select(step_runs.c.lease_expires_at, step_runs.c.started_at).where(
                        step_runs.c.id == claimed.id
                    )
                ).one()
            )
            # Expiry = the database's time at the claim + the TTL.
            assert abs(row.lease_expires_at - 60 - row.started_at) < 0.05
            assert 59 < row.lease_expires_at - db_now <= 60
            # Not expired while the database clock says the lease holds...
            assert await store.db.write(queue.expire_stale_leases) == []
            # ...and expired once it says so.
            await store.db.write(
                lambda conn: conn.execute(
                    update(step_runs)
                    .where(step_runs.c.id == claimed.id)
                    .values(lease_expires_at=row.lease_expires_at - 61)
                )
            )
            assert await store.db.write(queue.expire_stale_leases) == [claimed.id]

    run(scenario())


def failed(claimed: queue.ClaimedStep, error: str = "boom") -> StepOutcome:
    return StepOutcome(
        step_id=claimed.id,
        run_id=claimed.run_id,
        step_name=claimed.name,
        lease_epoch=claimed.lease_epoch,
        status=StepStatus.FAILED,
        error=error,
        dependents=claimed.dependents,
    )


def test_retry_resumes_from_the_failed_step_and_keeps_completed_outputs(url):
    async def scenario():
        async with Store(url) as store:
            run_id = await store.submit(
                StepSpec(name="a", type="noop"),
                StepSpec(name="b", type="noop", dependencies=("a",)),
                StepSpec(name="c", type="noop", dependencies=("b",)),
            )
            a = (await store.claim("w", 10)).claimed[0]
            batch = await store.db.write(
                queue.complete_and_claim, "w", [done(a, {"x": 1})], 10, 30.0
            )
            b = batch.claimed[0]
            await store.report("w", failed(b))
            run, steps = await store.service.get_run(run_id)
            assert run["status"] == "failed"
            assert {s["name"]: s["status"] for s in steps} == {
                "a": "completed",
                "b": "failed",
                "c": "cancelled",
            }
            retried = await store.service.retry(run_id)
            assert retried.resumed_steps == ["b", "c"]
            assert retried.run["status"] == "pending" and retried.run["id"] == run_id
            run, steps = await store.service.get_run(run_id)
            assert run["status"] == "pending" and run["error"] is None
            by_name = {s["name"]: s for s in steps}
            assert by_name["a"]["status"] == "completed" and by_name["a"]["result"] == {"x": 1}
            assert by_name["b"]["status"] == "pending" and by_name["b"]["deps_remaining"] == 0
            assert by_name["c"]["deps_remaining"] == 1 and by_name["c"]["error"] is None
            # Only b is claimable; a is not run again.
            assert [c.name for c in (await store.claim("w", 10)).claimed] == ["b"]
            with pytest.raises(Conflict):
                await store.service.retry(run_id)  # pending now: not retryable

    run(scenario())
