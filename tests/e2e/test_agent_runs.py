"""Agent workflows end to end: definitions executed against real A2A agents
(built with a2a-sdk, started by the tests), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest

from flowctl.testing.a2a_agents import (
    start_echo_agent,
    start_flaky_agent,
    start_slow_agent,
)

FAST_RETRY = {"max_retries": 3, "initial_delay_ms": 100, "max_delay_ms": 1000}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def register(api, agent, name: str, **fields) -> dict:
    resp = api.http.post("/api/v1/agents", json={"name": name, "url": agent.url, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def define(api, name: str, start: str, steps: dict) -> dict:
    resp = api.http.post(
        "/api/v1/workflows", json={"name": name, "start_step": start, "steps": steps}
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def step(agent_name: str, next_step: str | None, mapping: dict) -> dict:
    return {"agent_name": agent_name, "next_step": next_step, "input_mapping": mapping}


def linked(**steps: dict) -> dict:
    return {step_id: {"id": step_id, **body} for step_id, body in steps.items()}


def execute(api, workflow_id: str, input_data: dict) -> dict:
    resp = api.http.post(
        f"/api/v1/workflows/{workflow_id}/execute", json={"input_data": input_data}
    )
    assert resp.status_code == 202, resp.text
    return resp.json()


def wait_run(api, run_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.02)


def steps_of(api, run_id: str) -> dict[str, dict]:
    return {s["step_id"]: s for s in api.http.get(f"/api/v1/runs/{run_id}/steps").json()}


@pytest.fixture(scope="module")
def agents():
    started = {
        "extract": start_echo_agent("extractor"),
        "transform": start_echo_agent("transformer"),
        "load": start_echo_agent("loader"),
    }
    yield started
    for agent in started.values():
        agent.stop()


def test_three_step_etl_maps_inputs_and_outputs(api, agents):
    names = {key: unique(key) for key in agents}
    for key, agent in agents.items():
        register(api, agent, names[key])
    before = {key: agent.calls.sends for key, agent in agents.items()}
    wf = define(
        api,
        unique("etl"),
        "extract",
        linked(
            extract=step(
                names["extract"],
                "transform",
                {"source_url": "${workflow.input.data_source}", "rows": "${workflow.input.rows}"},
            ),
            transform=step(
                names["transform"],
                "load",
                {"raw_data": "${extract.output.source_url}", "schema": "${workflow.input.schema}"},
            ),
            load=step(
                names["load"],
                None,
                {
                    "transformed_data": "${transform.output.raw_data}",
                    "count": "${extract.output.rows}",
                },
            ),
        ),
    )
    run = execute(
        api, wf["id"], {"data_source": "https://example.com/data", "schema": "v2", "rows": 42}
    )
    assert run["status"] == "PENDING" and run["run_id"] == run["id"]
    assert run["workflow_definition_id"] == wf["id"]
    done = wait_run(api, run["id"], {"COMPLETED", "FAILED"})
    assert done["status"] == "COMPLETED", done
    steps = steps_of(api, run["id"])
    assert steps["extract"]["input_data"] == {"source_url": "https://example.com/data", "rows": 42}
    assert steps["transform"]["input_data"] == {
        "raw_data": "https://example.com/data",
        "schema": "v2",
    }
    assert steps["load"]["input_data"] == {
        "transformed_data": "https://example.com/data",
        "count": 42,
    }
    # An integer sent through the agent comes back an integer.
    assert steps["extract"]["output_data"]["rows"] == 42
    assert isinstance(steps["extract"]["output_data"]["rows"], int)
    assert steps["load"]["output_data"]["agent"] == "loader"
    assert [s["agent_name"] for s in steps.values()] == [
        names[k] for k in ("extract", "transform", "load")
    ]
    for key, agent in agents.items():
        assert agent.calls.sends - before[key] == 1, key


def test_a_flaky_agent_is_retried_by_its_retry_config(api):
    with start_flaky_agent("flaky", failures=2) as agent:
        name = unique("flaky")
        register(api, agent, name, retry_config=FAST_RETRY)
        wf = define(api, unique("wf"), "only", linked(only=step(name, None, {"x": 1})))
        run = execute(api, wf["id"], {})
        done = wait_run(api, run["id"], {"COMPLETED", "FAILED"})
        assert done["status"] == "COMPLETED", done
        only = steps_of(api, run["id"])["only"]
        assert only["retry_count"] == 2
        assert agent.calls.sends == 3


def test_failed_run_is_retried_after_the_agent_is_fixed(api, agents):
    with start_flaky_agent("broken", failures=1) as broken:
        first, second = unique("first"), unique("broken")
        register(api, agents["extract"], first)
        register(api, broken, second, retry_config={"max_retries": 0})
        wf = define(
            api,
            unique("wf"),
            "extract",
            linked(
                extract=step(first, "transform", {"v": "${workflow.input.v}"}),
                transform=step(second, None, {"v": "${extract.output.v}"}),
            ),
        )
        sends_before = agents["extract"].calls.sends
        run = execute(api, wf["id"], {"v": "x"})
        failed = wait_run(api, run["id"], {"FAILED", "COMPLETED"})
        assert failed["status"] == "FAILED"
        assert failed["error_message"].startswith("Step 'transform' failed: ")
        assert steps_of(api, run["id"])["transform"]["error_message"]
        # The broken agent's one failure is spent: it is "fixed". Retry resumes.
        resp = api.http.post(f"/api/v1/runs/{run['id']}/retry", json={})
        assert resp.status_code == 202
        done = wait_run(api, run["id"], {"COMPLETED", "FAILED"})
        assert done["status"] == "COMPLETED", done
        assert agents["extract"].calls.sends - sends_before == 1  # not called again
        assert broken.calls.sends == 2


def test_cancel_stops_a_slow_agent_call(api):
    with start_slow_agent("slow", seconds=30) as agent:
        name = unique("slow")
        register(api, agent, name)
        wf = define(api, unique("wf"), "wait", linked(wait=step(name, None, {})))
        run = execute(api, wf["id"], {})
        deadline = time.monotonic() + 10
        while agent.calls.sends == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)  # the step is following the agent's task now
        started = time.monotonic()
        resp = api.http.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "too slow"})
        assert resp.status_code == 200
        assert resp.json()["status"] == "CANCELLED"
        assert resp.json()["error_message"] == "Cancelled: too slow"
        while not agent.calls.cancels:
            assert time.monotonic() - started < 1.0, "the agent never saw the cancel"
            time.sleep(0.02)
        assert steps_of(api, run["id"])["wait"]["status"] == "CANCELLED"


def test_execute_refuses_what_cannot_run(api, agents):
    name = unique("agent")
    register(api, agents["extract"], name)
    wf = define(api, unique("wf"), "s", linked(s=step(name, None, {})))
    assert api.http.post(f"/api/v1/workflows/{wf['id']}/execute", json={}).status_code == 422
    missing = api.http.post("/api/v1/workflows/nope/execute", json={"input_data": {}})
    assert missing.status_code == 404
    assert (
        api.http.put(f"/api/v1/workflows/{wf['id']}", json={"status": "inactive"}).status_code
        == 200
    )
    inactive = api.http.post(f"/api/v1/workflows/{wf['id']}/execute", json={"input_data": {}})
    assert inactive.status_code == 400
    assert "inactive" in inactive.json()["error"]
    assert api.http.delete(f"/api/v1/workflows/{wf['id']}").status_code == 200
    deleted = api.http.post(f"/api/v1/workflows/{wf['id']}/execute", json={"input_data": {}})
    assert deleted.status_code == 400


def test_an_agent_on_a_private_address_is_refused_by_the_egress_guard(api):
    # Local mode allows loopback only: 10/8 is refused before any connection,
    # and not retried (the same address would be refused again).
    resp = api.http.post(
        "/api/v1/agents",
        json={
            "name": unique("internal"),
            "url": "http://10.20.30.40:8080",
            "retry_config": FAST_RETRY,
        },
    )
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    health = api.http.get(f"/api/v1/agents/{agent['id']}/health").json()
    assert health["healthy"] is False and "egress guard" in health["error"], health
    assert "10.20.30.40 is a private address" in health["error"]
    wf = define(api, unique("wf"), "only", linked(only=step(agent["name"], None, {"x": 1})))
    run = wait_run(api, execute(api, wf["id"], {})["id"], {"COMPLETED", "FAILED"})
    assert run["status"] == "FAILED"
    assert "egress guard" in run["error_message"] and run["error_message"].startswith("Step 'only'")
    assert steps_of(api, run["id"])["only"]["retry_count"] == 0
