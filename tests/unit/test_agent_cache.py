"""The in-process cache of resolved agents (engine/agents.py): an `agent` step
reuses what the last one read, and every change through the AgentService (the
API's) applies to the next step at once; a server with a real agent shows it
end to end (an agent deactivated through the API fails the next step for good).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from flowctl.config import Settings
from flowctl.engine import agents as agents_module
from flowctl.engine.agents import AgentCache, ResolvedAgent
from flowctl.engine.runtime import Runtime
from flowctl.executors.base import StepFailed
from flowctl.store import agents as store
from flowctl.testing import processes
from flowctl.testing.a2a_agents import start_echo_agent


def _agent(name: str, url: str = "http://127.0.0.1:9") -> ResolvedAgent:
    return ResolvedAgent(
        id=name,
        name=name,
        url=url,
        auth_type="none",
        auth_config=None,
        timeout_ms=1000,
        retry_config={},
        status="active",
    )


# --- AgentCache -----------------------------------------------------------------


def test_cache_keeps_entries_for_its_ttl():
    cache = AgentCache(ttl=0.05)
    cache.put({"a": _agent("a")}, cache.generation)
    assert cache.get("a") == _agent("a")
    assert cache.get("b") is None
    time.sleep(0.06)
    assert cache.get("a") is None


def test_invalidate_empties_and_refuses_reads_that_started_before_it():
    cache = AgentCache(ttl=60)
    cache.put({"a": _agent("a")}, cache.generation)
    started = cache.generation  # a lookup reads the database ...
    cache.invalidate()  # ... while the agent changes
    assert cache.get("a") is None
    cache.put({"a": _agent("a", "http://old")}, started)  # what it read may be stale
    assert cache.get("a") is None
    cache.put({"a": _agent("a", "http://new")}, cache.generation)
    assert cache.get("a").url == "http://new"


def test_zero_ttl_caches_nothing():
    cache = AgentCache(ttl=0)
    cache.put({"a": _agent("a")}, cache.generation)
    assert cache.get("a") is None


# --- through the runtime (the service the API uses, the worker's lookup) ----------


def _runtime(tmp_path: Path) -> Runtime:
    return Runtime(Settings(data_dir=tmp_path), with_worker=False)


def test_runtime_caches_and_sees_every_change(tmp_path: Path, monkeypatch):
    reads: list[list[str]] = []
    real = store.get_agents_by_names

    def counting(conn, names):
        reads.append(list(names))
        return real(conn, names)

    monkeypatch.setattr(agents_module.store, "get_agents_by_names", counting)

    async def scenario() -> None:
        runtime = _runtime(tmp_path)
        await runtime.start()
        service = runtime.agents
        try:
            created = await service.create(
                name="cached",
                url="http://127.0.0.1:9/a",
                auth_type="bearer",
                auth_config={"token": "t1"},
            )
            first = await runtime._agent_target("cached")
            second = await runtime._agent_target("cached")
            assert first.url == second.url == "http://127.0.0.1:9/a"
            assert first.auth_config == {"token": "t1"}
            assert len(reads) == 1  # the second step did not read the database

            await service.update(created["id"], {"url": "http://127.0.0.1:9/b"})
            assert (await runtime._agent_target("cached")).url == "http://127.0.0.1:9/b"
            await service.update(created["id"], {"auth_config": {"token": "t2"}})
            assert (await runtime._agent_target("cached")).auth_config == {"token": "t2"}

            await service.update(created["id"], {"status": "inactive"})
            with pytest.raises(StepFailed) as inactive:
                await runtime._agent_target("cached")
            assert inactive.value.retryable is False
            assert "inactive" in inactive.value.message

            await service.update(created["id"], {"status": "active"})
            assert (await runtime._agent_target("cached")).url == "http://127.0.0.1:9/b"

            await service.update(created["id"], {"name": "renamed"})
            assert await runtime._agent_target("cached") is None  # no agent by the old name
            assert (await runtime._agent_target("renamed")).url == "http://127.0.0.1:9/b"

            await service.delete(created["id"])
            assert await runtime._agent_target("renamed") is None
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_postgres_ttl_is_short(tmp_path: Path):
    runtime = _runtime(tmp_path)
    assert runtime.agents.cache.ttl == agents_module.CACHE_TTL_SQLITE_S
    assert agents_module.CACHE_TTL_POSTGRES_S <= 2


# --- end to end: a server, a real agent, the API ------------------------------------


def _wait_run(http, run_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in {"COMPLETED", "FAILED", "CANCELLED"}:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.02)


def test_agent_deactivated_through_the_api_fails_the_next_step(tmp_path: Path):
    import httpx

    name = f"echo-{uuid.uuid4().hex[:8]}"
    retry = {"max_retries": 3, "initial_delay_ms": 100, "max_delay_ms": 1000}
    server = processes.server(tmp_path, None, log_level="warning").start()
    try:
        with start_echo_agent("echo") as agent, httpx.Client(base_url=server.url) as http:
            created = http.post(
                "/api/v1/agents", json={"name": name, "url": agent.url, "retry_config": retry}
            )
            assert created.status_code == 201, created.text
            step = {"id": "a", "agent_name": name, "next_step": None, "input_mapping": {"n": 1}}
            resp = http.post(
                "/api/v1/workflows",
                json={"name": f"wf-{name}", "start_step": "a", "steps": {"a": step}},
            )
            assert resp.status_code == 201, resp.text
            wf = resp.json()

            def execute() -> dict:
                resp = http.post(f"/api/v1/workflows/{wf['id']}/execute", json={"input_data": {}})
                assert resp.status_code == 202, resp.text
                return _wait_run(http, resp.json()["id"])

            assert execute()["status"] == "COMPLETED"  # the agent is now cached
            sends = agent.calls.sends
            resp = http.put(f"/api/v1/agents/{created.json()['id']}", json={"status": "inactive"})
            assert resp.status_code == 200, resp.text

            failed = execute()
            assert failed["status"] == "FAILED", failed
            assert "inactive" in failed["error_message"]
            steps = http.get(f"/api/v1/runs/{failed['id']}/steps").json()
            assert steps[0]["retry_count"] == 0  # not retried: it cannot get better
            assert agent.calls.sends == sends  # the agent was not called
    finally:
        server.kill()


# --- the executor's SDK client, one per agent and card ------------------------------


def test_sdk_client_is_reused_per_card():
    from flowctl.executors import agent as executor

    async def clients(target) -> list:
        seen = []
        for _ in range(2):
            async with executor.connect(target) as session:
                seen.append(session.client)
        executor.forget_card(target.url)  # as a failed call does: the card is read again
        async with executor.connect(target) as session:
            seen.append(session.client)
        return seen

    executor._cards.clear()
    with start_echo_agent("echo") as agent:
        first, second, after = asyncio.run(clients(executor.AgentTarget(url=agent.url)))
    executor._cards.clear()
    assert first is second
    assert after is not first
