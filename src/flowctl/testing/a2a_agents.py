"""Real A2A agents for tests and benchmarks, built with the official `a2a-sdk`.

Each `start_*` function serves one agent over HTTP (uvicorn) on a free
loopback port in a background thread and returns a `RunningAgent`: its `url`
(the base URL to register as the agent's `url`), and `calls`, what the agent
saw (every JSON-RPC method, each input, request headers, cancel requests), so a
test can assert "called exactly once" or "saw the cancel".

    with start_echo_agent("extract") as agent:
        ...  # register agent.url, run a workflow
        assert agent.calls.sends == 1

The agents:

- echo: answers at once with a Message whose data part is the input plus
  `{"agent": name}`.
- task: answers with a working Task, then after `delay` seconds completes it
  with an artifact holding the echo (or fails/rejects it, or asks for input).
- slow: a task agent that takes `seconds`; it records the cancels it receives.
- flaky: an echo agent whose first `failures` calls fail (a JSON-RPC error or
  an HTTP 500), then succeed.
- protocol="0.3": any of them as an agent that only speaks A2A 0.3
  (`message/send`, `tasks/get`, `tasks/cancel`, card at
  `/.well-known/agent.json`); the 1.0 method names get "method not found".

Every agent also answers `GET /health` with 200. Faults (`Fault`) can be queued
on any agent at any time (`agent.calls.faults.append(...)`): each JSON-RPC call
takes the next one and answers with it instead of reaching the agent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.compat.v0_3 import types as types_v03
from a2a.helpers import new_data_message, new_data_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# JSON-RPC method names of A2A 1.0; a 0.3-only agent does not know them.
V1_METHODS = frozenset(
    {
        "SendMessage",
        "SendStreamingMessage",
        "GetTask",
        "ListTasks",
        "CancelTask",
        "SubscribeToTask",
        "GetExtendedAgentCard",
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
    }
)
SEND_METHODS = frozenset({"SendMessage", "message/send"})
GET_METHODS = frozenset({"GetTask", "tasks/get"})
CANCEL_METHODS = frozenset({"CancelTask", "tasks/cancel"})


@dataclass
class Fault:
    """One JSON-RPC call answered badly instead of by the agent.

    `delay` seconds pass first; then the answer is `body` with `status`, or,
    when `body` is None and `status` is 200, the call goes on to the agent
    (a pure delay). `method`, when set, limits the fault to that method.
    """

    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    method: str | None = None

    @classmethod
    def http(cls, status: int, body: bytes = b"oops") -> Fault:
        return cls(status=status, body=body, content_type="text/plain")

    @classmethod
    def rpc_error(cls, code: int = -32603, message: str = "agent failure") -> Fault:
        return cls(body=b"@rpc-error " + json.dumps([code, message]).encode())

    @classmethod
    def invalid_json(cls) -> Fault:
        return cls(body=b"{not json")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(delay=seconds)


@dataclass
class AgentCalls:
    """What one agent saw. Lists are appended from the server's thread."""

    methods: list[str] = field(default_factory=list)  # every JSON-RPC method, in order
    inputs: list[Any] = field(default_factory=list)  # the data the agent executor got
    context_ids: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each JSON-RPC call
    cancels: list[str] = field(default_factory=list)  # task ids the agent was asked to cancel
    cancel_times: list[float] = field(default_factory=list)  # time.monotonic() of each
    faults: collections.deque[Fault] = field(default_factory=collections.deque)

    def count(self, methods: frozenset[str] | str) -> int:
        names = {methods} if isinstance(methods, str) else methods
        return sum(1 for m in self.methods if m in names)

    @property
    def sends(self) -> int:
        """SendMessage (1.0) or message/send (0.3) calls, failed ones included."""
        return self.count(SEND_METHODS)

    @property
    def gets(self) -> int:
        return self.count(GET_METHODS)

    @property
    def cancel_requests(self) -> int:
        return self.count(CANCEL_METHODS)

    @property
    def last_input(self) -> Any:
        return self.inputs[-1] if self.inputs else None

    @property
    def last_headers(self) -> dict[str, str]:
        return self.headers[-1] if self.headers else {}


def message_data(message: Message | None) -> Any:
    """The data of a message's data parts: one part as is, several dicts merged."""
    if message is None:
        return None
    values = [MessageToDict(p.data) for p in message.parts if p.HasField("data")]
    if len(values) == 1:
        return values[0]
    if values and all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for v in values:
            merged.update(v)
        return merged
    return values or None


def _echo(data: Any, name: str) -> Any:
    if isinstance(data, dict):
        return {**data, "agent": name}
    return {"input": data, "agent": name}


class EchoExecutor(AgentExecutor):
    """Answers with a Message: the input's data plus {"agent": name}."""

    def __init__(self, name: str, calls: AgentCalls):
        self.name = name
        self.calls = calls

    def _record(self, context: RequestContext) -> Any:
        data = message_data(context.message)
        self.calls.inputs.append(data)
        if context.message is not None:
            self.calls.context_ids.append(context.message.context_id)
            self.calls.message_ids.append(context.message.message_id)
        return data

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        data = self._record(context)
        await event_queue.enqueue_event(
            new_data_message(_echo(data, self.name), context_id=context.context_id)
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.calls.cancels.append(context.task_id or "")
        self.calls.cancel_times.append(time.monotonic())


class TaskExecutor(EchoExecutor):
    """Answers with a working Task and finishes it `delay` seconds later.

    `outcome`: "completed" (artifact = the echo), "failed" or "rejected" (with
    `status_text` as the status message), "input-required".
    """

    def __init__(
        self,
        name: str,
        calls: AgentCalls,
        *,
        delay: float,
        outcome: str = "completed",
        status_text: str = "",
    ):
        super().__init__(name, calls)
        self.delay = delay
        self.outcome = outcome
        self.status_text = status_text

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        data = self._record(context)
        task_id = context.task_id or ""
        context_id = context.context_id or ""
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[context.message] if context.message else [],
                )
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        await asyncio.sleep(self.delay)
        status_message = None
        if self.status_text:
            status_message = updater.new_agent_message([Part(text=self.status_text)])
        if self.outcome == "completed":
            await updater.add_artifact([new_data_part(_echo(data, self.name))], name="result")
            await updater.complete(status_message)
        elif self.outcome == "failed":
            await updater.failed(status_message)
        elif self.outcome == "rejected":
            await updater.reject(status_message)
        elif self.outcome == "input-required":
            await updater.requires_input(status_message)
        else:
            raise ValueError(f"unknown outcome {self.outcome!r}")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await super().cancel(context, event_queue)
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


def _agent_card(name: str, url: str, protocol: str) -> AgentCard:
    return AgentCard(
        name=name,
        description=f"flowctl test agent {name}",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=protocol)
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[AgentSkill(id="echo", name="echo", description="echoes its input", tags=["test"])],
    )


def _legacy_card_dict(name: str, url: str) -> dict[str, Any]:
    card = types_v03.AgentCard(
        name=name,
        description=f"flowctl test agent {name} (A2A 0.3)",
        url=url,
        version="1.0.0",
        protocol_version="0.3.0",
        preferred_transport="JSONRPC",
        capabilities=types_v03.AgentCapabilities(streaming=False),
        default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[types_v03.AgentSkill(id="echo", name="echo", description="echoes", tags=["test"])],
    )
    return card.model_dump(by_alias=True, exclude_none=True, mode="json")


class _Recorder:
    """ASGI wrapper around the agent app: records each JSON-RPC call, applies faults,
    and (for a 0.3 agent) refuses the 1.0 method names."""

    def __init__(self, app: Any, calls: AgentCalls, *, legacy: bool):
        self.app = app
        self.calls = calls
        self.legacy = legacy

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        body = b"".join(chunks)
        method, request_id = "?", None
        with contextlib.suppress(ValueError, AttributeError):
            parsed = json.loads(body)
            method, request_id = str(parsed.get("method")), parsed.get("id")
        self.calls.methods.append(method)
        self.calls.headers.append(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        )
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.body is not None or fault.status != 200:
                await self._answer_fault(fault, request_id, send)
                return
        if self.legacy and method in V1_METHODS:
            error = {"code": -32601, "message": "Method not found"}
            await _send_json(send, 200, {"jsonrpc": "2.0", "id": request_id, "error": error})
            return

        await self.app(scope, replaying(body, receive), send)

    def _take_fault(self, method: str) -> Fault | None:
        faults = self.calls.faults
        for i, fault in enumerate(faults):
            if fault.method is None or fault.method == method:
                del faults[i]
                return fault
        return None

    async def _answer_fault(self, fault: Fault, request_id: Any, send: Callable) -> None:
        assert fault.body is not None or fault.status != 200
        body = fault.body or b""
        if body.startswith(b"@rpc-error "):
            code, message = json.loads(body.removeprefix(b"@rpc-error "))
            error = {"code": code, "message": message}
            await _send_json(send, 200, {"jsonrpc": "2.0", "id": request_id, "error": error})
            return
        headers = [(b"content-type", fault.content_type.encode())]
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def replaying(body: bytes, receive: Callable) -> Callable:
    """An ASGI `receive` that hands the app a request body already read (by a
    wrapper that had to look at it), then defers to the real one."""
    delivered = False

    async def receive_again() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


async def _send_json(send: Callable, status: int, data: Any) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_agent_app(
    name: str,
    executor: AgentExecutor,
    calls: AgentCalls,
    url: str,
    *,
    protocol: str = "1.0",
) -> Any:
    """The ASGI app of one agent: card, JSON-RPC at `/`, `/health`."""
    legacy = protocol.startswith("0.")
    card = _agent_card(name, url, "0.3" if legacy else "1.0")
    handler = DefaultRequestHandler(
        agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
    )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "agent": name})

    routes: list[Any] = [Route("/health", health, methods=["GET"])]
    if legacy:
        legacy_card = _legacy_card_dict(name, url)

        async def agent_json(request: Request) -> JSONResponse:
            return JSONResponse(legacy_card)

        routes.append(Route("/.well-known/agent.json", agent_json, methods=["GET"]))
    else:
        routes += create_agent_card_routes(card)
    routes += create_jsonrpc_routes(handler, "/", enable_v0_3_compat=legacy)
    return _Recorder(Starlette(routes=routes), calls, legacy=legacy)


@dataclass
class RunningAgent:
    name: str
    url: str
    calls: AgentCalls
    protocol: str
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_agent(
    name: str,
    make_executor: Callable[[AgentCalls], AgentExecutor],
    *,
    protocol: str = "1.0",
    faults: list[Fault] | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    wait: float = 10.0,
) -> RunningAgent:
    """Serves the agent that `make_executor` builds on `host`:`port` (0: a free
    port); returns when it listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    calls = AgentCalls(faults=collections.deque(faults or []))
    app = build_agent_app(name, make_executor(calls), calls, url + "/", protocol=protocol)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"a2a-agent-{name}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + wait
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"A2A agent {name} did not start")
        time.sleep(0.01)
    return RunningAgent(name, url, calls, protocol, server, thread)


def start_echo_agent(
    name: str = "echo",
    *,
    protocol: str = "1.0",
    faults: list[Fault] | None = None,
    port: int = 0,
) -> RunningAgent:
    return start_agent(
        name, lambda c: EchoExecutor(name, c), protocol=protocol, faults=faults, port=port
    )


class EtlExecutor(EchoExecutor):
    """Answers like the agents of the spec's examples: its input under `data`
    (and `validated_data`), so `${step.output.data}` mappings resolve."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        data = self._record(context)
        reply = {"data": data, "validated_data": data, "agent": self.name}
        await event_queue.enqueue_event(new_data_message(reply, context_id=context.context_id))


def start_etl_agent(
    name: str = "etl", *, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0
) -> RunningAgent:
    """An agent answering `{"data": <input>, "validated_data": <input>}`; with
    `delay`, a task agent that takes that long (and can be cancelled)."""
    if delay:
        return start_agent(name, lambda c: TaskExecutor(name, c, delay=delay), host=host, port=port)
    return start_agent(name, lambda c: EtlExecutor(name, c), host=host, port=port)


def start_task_agent(
    name: str = "tasker",
    *,
    delay: float = 0.3,
    outcome: str = "completed",
    status_text: str = "",
    protocol: str = "1.0",
    faults: list[Fault] | None = None,
) -> RunningAgent:
    return start_agent(
        name,
        lambda c: TaskExecutor(name, c, delay=delay, outcome=outcome, status_text=status_text),
        protocol=protocol,
        faults=faults,
    )


def start_slow_agent(
    name: str = "slow", *, seconds: float = 30.0, protocol: str = "1.0"
) -> RunningAgent:
    """A task agent that works `seconds` before completing; `calls.cancels` records cancels."""
    return start_task_agent(name, delay=seconds, protocol=protocol)


def start_flaky_agent(
    name: str = "flaky",
    *,
    failures: int = 2,
    mode: str = "jsonrpc",
    protocol: str = "1.0",
) -> RunningAgent:
    """An echo agent whose first `failures` calls fail: `mode` "jsonrpc" answers a
    JSON-RPC internal error (-32603), "http500" an HTTP 500."""
    if mode == "jsonrpc":
        fault = Fault.rpc_error(-32603, "flaky agent failure")
    elif mode == "http500":
        fault = Fault.http(500, b"flaky agent failure")
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return start_echo_agent(name, protocol=protocol, faults=[fault] * failures)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Polls `predicate` until it is true or `timeout` passes (for async tests)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


__all__ = [
    "AgentCalls",
    "Fault",
    "RunningAgent",
    "build_agent_app",
    "message_data",
    "start_agent",
    "start_echo_agent",
    "start_flaky_agent",
    "start_slow_agent",
    "start_task_agent",
    "wait_for",
]
