"""The `agent` executor against real A2A agents (a2a-sdk servers on free ports)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest

from flowctl.executors import agent as agent_module
from flowctl.executors.agent import AgentExecutor, AgentTarget, connect, restore_ints
from flowctl.executors.base import StepContext, StepFailed
from flowctl.testing.a2a_agents import (
    Fault,
    start_echo_agent,
    start_flaky_agent,
    start_slow_agent,
    start_task_agent,
    wait_for,
)

EXECUTOR = AgentExecutor()


@pytest.fixture(autouse=True)
def _no_cached_cards():
    agent_module._cards.clear()
    yield
    agent_module._cards.clear()


def make_ctx(url: str, payload: Any = None, *, attempt: int = 1, **target: Any) -> StepContext:
    return StepContext(
        run_id="run1",
        step_id="step1",
        step_name="transform",
        step_type="agent",
        attempt=attempt,
        payload={"x": 1} if payload is None else payload,
        agent=AgentTarget(url=url, **target),
    )


def run(ctx: StepContext) -> Any:
    return asyncio.run(EXECUTOR.execute(ctx))


def fail(ctx: StepContext) -> StepFailed:
    with pytest.raises(StepFailed) as info:
        run(ctx)
    return info.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- replies -------------------------------------------------------------------


def test_message_reply_round_trips_the_data():
    with start_echo_agent("extract") as agent:
        payload = {"name": "ada", "tags": ["a", "b"], "nested": {"ok": True, "none": None}}
        ctx = make_ctx(agent.url, payload)
        output = run(ctx)
    assert output == {**payload, "agent": "extract"}
    assert agent.calls.methods == ["SendMessage"]
    assert agent.calls.last_input == payload
    assert agent.calls.context_ids == ["flowctl-run1-step1"]
    assert agent.calls.message_ids == ["flowctl-run1-step1-1"]
    assert agent.calls.last_headers["a2a-version"] == "1.0"
    assert ctx.checkpoint == {}  # a message needs nothing remembered


def test_message_id_is_per_attempt():
    with start_echo_agent() as agent:
        run(make_ctx(agent.url, attempt=3))
    assert agent.calls.message_ids == ["flowctl-run1-step1-3"]
    assert agent.calls.context_ids == ["flowctl-run1-step1"]


def test_integers_stay_integers():
    with start_echo_agent() as agent:
        output = run(make_ctx(agent.url, {"n": 42, "f": 1.5, "list": [1, 2.5, -7], "big": 2**60}))
    assert output["n"] == 42 and type(output["n"]) is int
    assert output["f"] == 1.5 and type(output["f"]) is float
    assert output["list"] == [1, 2.5, -7] and [type(v) for v in output["list"]] == [int, float, int]
    # Beyond 2**53 a double cannot hold every integer: it stays a float, visibly inexact.
    assert type(output["big"]) is float
    # What the SDK does: a protobuf Value holds numbers as doubles, so the agent got 42.0.
    assert agent.calls.last_input["n"] == 42.0 and type(agent.calls.last_input["n"]) is float


def test_restore_ints_rule():
    assert restore_ints({"a": 42.0, "b": [1.0, 1.5], "c": "3.0", "d": True}) == {
        "a": 42,
        "b": [1, 1.5],
        "c": "3.0",
        "d": True,
    }
    assert type(restore_ints(float(2**53))) is int
    assert type(restore_ints(float(2**53) * 2)) is float
    assert type(restore_ints(-(2.0**53))) is int


def test_working_task_is_followed_to_completion():
    saved: list[dict[str, Any]] = []
    with start_task_agent("tasker", delay=0.3) as agent:
        ctx = make_ctx(agent.url, {"n": 7})

        async def save() -> None:
            saved.append(dict(ctx.checkpoint))

        ctx.save_checkpoint = save
        output = run(ctx)
    assert output == {"n": 7, "agent": "tasker"}
    assert agent.calls.sends == 1
    assert agent.calls.gets >= 1
    # The task id was committed once, before following.
    assert len(saved) == 1 and saved[0]["a2a_task_id"] and saved[0]["a2a_attempt"] == 1
    assert ctx.checkpoint["a2a_task_id"] == saved[0]["a2a_task_id"]


def test_checkpointed_task_is_resumed_without_sending_again():
    with start_task_agent("tasker", delay=0.4) as agent:
        first = make_ctx(agent.url, {"n": 1})

        async def send_only() -> str:
            async with connect(first.agent) as session:
                task = await EXECUTOR._send(first, session, first.payload)
            return task.id

        task_id = asyncio.run(send_only())  # a worker sent, committed the id, then died
        assert agent.calls.sends == 1
        resumed = make_ctx(agent.url, {"n": 1})
        resumed.checkpoint = {"a2a_task_id": task_id, "a2a_attempt": 1}
        output = run(resumed)
    assert output == {"n": 1, "agent": "tasker"}
    assert agent.calls.sends == 1  # no second message
    assert agent.calls.gets >= 1
    assert any("resuming agent task" in line.message for line in resumed.logs)


def test_checkpoint_of_a_task_the_agent_forgot_sends_again():
    with start_task_agent("tasker", delay=0.05) as agent:
        ctx = make_ctx(agent.url, {"n": 2})
        ctx.checkpoint = {"a2a_task_id": "no-such-task", "a2a_attempt": 1}
        output = run(ctx)
    assert output == {"n": 2, "agent": "tasker"}
    assert agent.calls.sends == 1
    assert ctx.checkpoint["a2a_task_id"] != "no-such-task"


def test_retry_after_a_failed_task_sends_again():
    with start_task_agent("tasker", delay=0.05, outcome="failed") as agent:
        first = make_ctx(agent.url)
        assert "agent task failed" in fail(first).message
        assert first.checkpoint["a2a_attempt"] == 1
        retry = make_ctx(agent.url, attempt=2)
        retry.checkpoint = dict(first.checkpoint)
        fail(retry)
    assert agent.calls.sends == 2
    assert agent.calls.message_ids == ["flowctl-run1-step1-1", "flowctl-run1-step1-2"]


def test_cancel_sends_cancel_task():
    with start_slow_agent("slow", seconds=30) as agent:
        ctx = make_ctx(agent.url)

        async def scenario() -> float:
            task = asyncio.create_task(EXECUTOR.execute(ctx))
            assert await wait_for(lambda: "a2a_task_id" in ctx.checkpoint, 5)
            await asyncio.sleep(0.1)  # following now
            cancelled_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await wait_for(lambda: bool(agent.calls.cancels), 1.0)
            return cancelled_at

        cancelled_at = asyncio.run(scenario())
    assert agent.calls.cancel_requests == 1
    assert agent.calls.cancels == [ctx.checkpoint["a2a_task_id"]]
    assert agent.calls.cancel_times[0] - cancelled_at < 1.0


# --- failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message", "retryable"),
    [
        (Fault.rpc_error(-32603, "boom"), "agent error -32603: boom", True),
        (Fault.rpc_error(-32602, "bad params"), "agent error -32602: bad params", False),
        (Fault.rpc_error(-32050, "custom"), "agent error -32050: custom", False),
        (Fault.http(503), "HTTP 503 from agent", True),
        (Fault.http(500), "HTTP 500 from agent", True),
        (Fault.http(429), "HTTP 429 from agent", True),
        (Fault.http(401), "HTTP 401 from agent", False),
        (Fault.http(404), "HTTP 404 from agent", False),
        (Fault.invalid_json(), "invalid JSON from agent", False),
    ],
)
def test_failure_kinds(fault: Fault, message: str, retryable: bool):
    with start_echo_agent(faults=[fault]) as agent:
        exc = fail(make_ctx(agent.url))
    assert exc.message == message
    assert exc.retryable is retryable


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ("failed", "agent task failed: disk full"),
        ("rejected", "agent task rejected: disk full"),
        ("input-required", "agent task needs input (input-required)"),
    ],
)
def test_unsuccessful_tasks(outcome: str, message: str):
    with start_task_agent(delay=0.05, outcome=outcome, status_text="disk full") as agent:
        exc = fail(make_ctx(agent.url))
    assert exc.message.startswith(message)
    assert exc.retryable is False


def test_timeout():
    with start_echo_agent(faults=[Fault.slow(3)]) as agent:
        started = time.monotonic()
        exc = fail(make_ctx(agent.url, timeout_s=0.5))
    assert exc.message == "agent timed out after 0.5s"
    assert exc.retryable is True
    assert time.monotonic() - started < 2.5


def test_connection_refused():
    url = f"http://127.0.0.1:{closed_port()}"
    exc = fail(make_ctx(url))
    assert exc.message == f"connection refused by agent at {url}"
    assert exc.retryable is True


def test_missing_agent_and_bad_input():
    ctx = make_ctx("http://127.0.0.1:1")
    ctx.agent = None
    exc = fail(ctx)
    assert "no agent for this step" in exc.message and exc.retryable is False
    exc = fail(make_ctx("http://127.0.0.1:1", [1, 2]))
    assert "must be a JSON object" in exc.message and exc.retryable is False


@pytest.mark.parametrize("mode", ["jsonrpc", "http500"])
def test_flaky_agent_fails_then_succeeds(mode: str):
    with start_flaky_agent(failures=2, mode=mode) as agent:
        for _ in range(2):
            assert fail(make_ctx(agent.url)).retryable is True
        assert run(make_ctx(agent.url)) == {"x": 1, "agent": "flaky"}
    assert agent.calls.sends == 3
    assert len(agent.calls.inputs) == 1  # only the third reached the agent


# --- auth ----------------------------------------------------------------------------


def test_bearer_and_apikey_headers():
    with start_echo_agent() as agent:
        run(make_ctx(agent.url, auth_type="bearer", auth_config={"token": "tok-1"}))
        assert agent.calls.last_headers["authorization"] == "Bearer tok-1"
        run(make_ctx(agent.url, auth_type="apikey", auth_config={"key": "k-2"}))
        assert agent.calls.last_headers["x-api-key"] == "k-2"
        run(
            make_ctx(
                agent.url, auth_type="apikey", auth_config={"key": "k-3", "header": "X-Custom"}
            )
        )
        assert agent.calls.last_headers["x-custom"] == "k-3"
        assert "authorization" not in agent.calls.last_headers
        exc = fail(make_ctx(agent.url, auth_type="bearer", auth_config={}))
    assert "no token" in exc.message and exc.retryable is False


# --- protocol 0.3 -------------------------------------------------------------------


def test_legacy_agent_message():
    with start_echo_agent("old", protocol="0.3") as agent:
        output = run(make_ctx(agent.url, {"n": 42, "f": 1.5}))
    assert output == {"n": 42, "f": 1.5, "agent": "old"}
    assert type(output["n"]) is int
    assert agent.calls.methods == ["message/send"]
    assert agent.calls.last_headers["a2a-version"] == "0.3"
    assert agent.calls.context_ids == ["flowctl-run1-step1"]


def test_legacy_agent_task_and_cancel():
    with start_task_agent("old-tasker", delay=0.2, protocol="0.3") as agent:
        assert run(make_ctx(agent.url, {"n": 3})) == {"n": 3, "agent": "old-tasker"}
    assert agent.calls.methods[0] == "message/send"
    assert "tasks/get" in agent.calls.methods

    with start_slow_agent("old-slow", seconds=30, protocol="0.3") as agent:
        ctx = make_ctx(agent.url)

        async def scenario() -> None:
            task = asyncio.create_task(EXECUTOR.execute(ctx))
            assert await wait_for(lambda: "a2a_task_id" in ctx.checkpoint, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await wait_for(lambda: bool(agent.calls.cancels), 1.0)

        asyncio.run(scenario())
    assert agent.calls.count("tasks/cancel") == 1


def test_cached_card_of_a_redeployed_agent_is_read_again():
    first = start_echo_agent("v1")
    port = first.port
    with first:
        run(make_ctx(first.url))
    with start_echo_agent("v03", protocol="0.3", port=port) as second:
        assert run(make_ctx(second.url)) == {"x": 1, "agent": "v03"}
    assert second.calls.methods == ["SendMessage", "message/send"]


def test_agents_answer_health():
    with start_echo_agent() as agent, start_task_agent(protocol="0.3") as old:
        assert httpx.get(f"{agent.url}/health").status_code == 200
        assert httpx.get(f"{old.url}/health").status_code == 200
