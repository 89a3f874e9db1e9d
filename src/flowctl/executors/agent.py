"""`agent`: send the step's input to a registered A2A agent, output its reply.

The client is the official `a2a-sdk` (1.3): its card resolver reads the agent
card and its `ClientFactory` picks the transport the card asks for, so one code
path speaks both protocol versions:

- A2A 1.0 (`SendMessage`, `GetTask`, `CancelTask`, header `A2A-Version: 1.0`),
  card at `/.well-known/agent-card.json`;
- A2A 0.3 (`message/send`, `tasks/get`, `tasks/cancel`), card at
  `/.well-known/agent.json` (tried when the 1.0 path answers 404), or any card
  whose `protocolVersion` is 0.3.x. The SDK converts 0.3 messages and tasks to
  and from its 1.0 types.

Only the JSON-RPC binding is used; an agent whose card offers only gRPC or
HTTP+JSON fails the step (not retryable). Cards are cached per URL for 60 s; if
a send with a cached card gets "method not found" or "version not supported"
(an agent redeployed on the other protocol), the card is read again and the
call tried once more.

One call:

1. The step's resolved `input_mapping` (a JSON object) goes out as one data
   part of a user message, with `context_id` = `flowctl-<run>-<step>` (the same
   on every attempt) and `message_id` = `flowctl-<run>-<step>-<attempt>` (the
   same if a worker dies and the attempt is resumed), and asks the agent to
   answer at once (`return_immediately`, 0.3 `blocking: false`).
2. A Message reply is the answer. A Task reply that is not finished has its id
   committed first (`ctx.checkpoint["a2a_task_id"]`, then
   `ctx.save_checkpoint()`), then is followed with `GetTask` (polling with
   backoff, 50 ms growing to 1 s) until it ends.
3. A step that starts with a task id in its checkpoint does not send again: it
   follows that task. The exceptions: the agent no longer knows the task
   (TaskNotFound: sent again), or the task ended failed/rejected/cancelled in an
   earlier attempt (this attempt is a retry of that failure: sent again).
4. Cancelling the step (the asyncio task is cancelled: run cancel, step
   timeout, lost lease) sends `CancelTask` for the remote task, best effort
   within 2 s, and re-raises.

Output: the data parts of the reply Message, or of a completed Task's
artifacts (falling back to its status message). One data part is the output as
is; several objects are merged (later keys win); several values of other kinds
become a list. A reply with text parts only gives `{"text": "..."}`.

Numbers. A2A 1.0 carries a data part as a `google.protobuf.Value`, which holds
every number as a double: the SDK turns 42 into 42.0 on the way out (the agent
receives 42.0) and on the way back (`MessageToDict` gives 42.0), for 0.3 agents
too since the SDK converts through the same types. The output therefore turns
back into an int every float that is integral and within +-2**53 (where a
double holds every integer exactly). Limits: a value the agent meant as the
float 3.0 comes back as 3 (JSON does not tell them apart either), and an
integer beyond 2**53 has already lost precision in the double, so it stays a
float rather than pretend to be exact. Non-integral floats are untouched.

Failures, each with a message that says which, and whether a retry may help:

| what                                        | message                           | retryable |
| ------------------------------------------- | --------------------------------- | --------- |
| no agent on the step context                | no agent for this step ...        | no        |
| input that is not a JSON object             | agent step input must be ...      | no        |
| timeout of one request (`timeout_s`)        | agent timed out after Ns          | yes       |
| connection refused / other connect error    | connection refused by agent at URL| yes       |
| other transport error (reset, protocol)     | request to agent failed: ...      | yes       |
| HTTP 5xx, 429, 408                          | HTTP 503 from agent               | yes       |
| other non-2xx HTTP (401, 403, 404, ...)     | HTTP 404 from agent               | no        |
| body that is not JSON                       | invalid JSON from agent           | no        |
| JSON-RPC error -32603 (internal error)      | agent error -32603: <message>     | yes       |
| any other JSON-RPC error                    | agent error <code>: <message>     | no        |
| reply that is not valid A2A                 | invalid response from agent: ...  | no        |
| task failed / rejected                      | agent task failed: <status text>  | no        |
| task cancelled by the agent                 | agent task was cancelled ...      | no        |
| task needs input or auth                    | agent task needs input ...        | no        |

-32603 is the JSON-RPC twin of HTTP 500 (the SDK answers it when an agent
raises), so it is retried like a 500; the other codes describe the request
(method not found, invalid params, task not found, ...) and would fail again.
A failed or rejected task is the agent's considered answer, not a transport
accident. `timeout_s` bounds each request to the agent (card, send, each
poll); the whole step, following a long task included, is bounded by the
step's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    A2AClientTimeoutError,
    AgentCardResolutionError,
    Client,
    ClientConfig,
    ClientFactory,
)
from a2a.compat.v0_3.versions import is_legacy_version
from a2a.helpers import new_data_part
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import (
    JSON_RPC_ERROR_CODE_MAP,
    A2AError,
    MethodNotFoundError,
    TaskNotFoundError,
    VersionNotSupportedError,
)
from google.protobuf.json_format import MessageToDict

from flowctl.executors.base import Executor, StepContext, StepFailed
from flowctl.security.egress import EgressDenied, EgressPolicy, guarded_client

AuthType = Literal["none", "bearer", "apikey"]

CHECKPOINT_TASK_ID = "a2a_task_id"
CHECKPOINT_ATTEMPT = "a2a_attempt"

CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json")  # 1.0, then 0.3
CARD_TTL_S = 60.0
CANCEL_TIMEOUT_S = 2.0
POLL_INITIAL_S = 0.05
POLL_FACTOR = 1.5
POLL_MAX_S = 1.0
MAX_SAFE_INT = 2**53
INTERNAL_ERROR = -32603

TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
UNSUCCESSFUL = frozenset(
    {TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED}
)

T = TypeVar("T")


class _StaleCard(Exception):
    """The agent did not know the method its cached card promised."""


@dataclass(slots=True)
class AgentTarget:
    """The registered agent an `agent` step calls: where, how to authenticate, how long to wait."""

    url: str
    auth_type: AuthType = "none"
    # bearer: {"token"} -> Authorization: Bearer <token>
    # apikey: {"key", "header"?} -> <header, default X-API-Key>: <key>
    auth_config: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    egress: EgressPolicy = field(default_factory=EgressPolicy)  # where its calls may go

    def headers(self) -> dict[str, str]:
        """The authentication headers of every request to this agent."""
        config = self.auth_config or {}
        if self.auth_type == "bearer":
            token = config.get("token")
            if not token:
                raise StepFailed(
                    "agent auth_type is bearer but auth_config has no token", retryable=False
                )
            return {"Authorization": f"Bearer {token}"}
        if self.auth_type == "apikey":
            key = config.get("key")
            if not key:
                raise StepFailed(
                    "agent auth_type is apikey but auth_config has no key", retryable=False
                )
            return {str(config.get("header") or "X-API-Key"): str(key)}
        if self.auth_type in ("none", "", None):
            return {}
        raise StepFailed(f"unknown agent auth_type {self.auth_type!r}", retryable=False)


# --- numbers ------------------------------------------------------------------


def restore_ints(value: Any) -> Any:
    """`value` with every integral float within +-2**53 turned back into an int."""
    if isinstance(value, float):
        if value.is_integer() and -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: restore_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_ints(v) for v in value]
    return value


# --- reply to output ------------------------------------------------------------


def parts_output(parts: list[Part]) -> Any:
    """The output for a list of parts (see the module doc); None if they hold nothing."""
    values = [MessageToDict(p.data) for p in parts if p.HasField("data")]
    if values:
        if len(values) == 1:
            return restore_ints(values[0])
        if all(isinstance(v, dict) for v in values):
            merged: dict[str, Any] = {}
            for v in values:
                merged.update(v)
            return restore_ints(merged)
        return restore_ints(values)
    texts = [p.text for p in parts if p.HasField("text")]
    if texts:
        return {"text": "\n".join(texts)}
    return None


def message_output(message: Message) -> Any:
    return parts_output(list(message.parts))


def task_output(task: Task) -> Any:
    parts = [part for artifact in task.artifacts for part in artifact.parts]
    output = parts_output(parts)
    if output is None and task.status.HasField("message"):
        output = message_output(task.status.message)
    return output


def _status_text(task: Task) -> str:
    if not task.status.HasField("message"):
        return ""
    parts = task.status.message.parts
    texts = [p.text for p in parts if p.HasField("text")]
    texts += [json.dumps(MessageToDict(p.data)) for p in parts if p.HasField("data")]
    return " ".join(t for t in texts if t)


def _state_name(state: int) -> str:
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


def task_failure(task: Task) -> StepFailed:
    """The StepFailed for a task that ended without completing."""
    state = task.status.state
    reason = _status_text(task) or "no reason given"
    output = task_output(task)
    if state == TaskState.TASK_STATE_FAILED:
        return StepFailed(f"agent task failed: {reason}", output=output, retryable=False)
    if state == TaskState.TASK_STATE_REJECTED:
        return StepFailed(f"agent task rejected: {reason}", output=output, retryable=False)
    if state == TaskState.TASK_STATE_CANCELED:
        return StepFailed(f"agent task was cancelled by the agent: {reason}", retryable=False)
    return StepFailed(
        f"agent task needs {'auth' if state == TaskState.TASK_STATE_AUTH_REQUIRED else 'input'}"
        f" ({_state_name(state)}), which a workflow step cannot give: {reason}",
        output=output,
        retryable=False,
    )


# --- errors ---------------------------------------------------------------------

_RPC_ERROR = re.compile(r"JSON-RPC Error (-?\d+): (.*)", re.DOTALL)
_CODE_OF = {cls: code for cls, code in JSON_RPC_ERROR_CODE_MAP.items()}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def failure_for(exc: BaseException, agent: AgentTarget) -> StepFailed:
    """A StepFailed saying what went wrong talking to `agent` (see the module doc)."""
    chain = _chain(exc)

    def find(kind: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
        return next((e for e in chain if isinstance(e, kind)), None)

    denied = find(EgressDenied)
    if denied is not None:
        return StepFailed(str(denied), retryable=False)

    if find((TimeoutError, A2AClientTimeoutError, httpx.TimeoutException)):
        return StepFailed(f"agent timed out after {agent.timeout_s:g}s", retryable=True)
    status_error = find(httpx.HTTPStatusError)
    if status_error is not None:
        status = status_error.response.status_code
        retryable = status >= 500 or status in (408, 429)
        return StepFailed(f"HTTP {status} from agent", retryable=retryable)
    if find(ConnectionRefusedError):
        return StepFailed(f"connection refused by agent at {agent.url}", retryable=True)
    connect_error = find(httpx.ConnectError)
    if connect_error is not None:
        return StepFailed(f"could not connect to agent at {agent.url}: {connect_error}")
    request_error = find(httpx.RequestError)
    if request_error is not None:
        detail = str(request_error) or type(request_error).__name__
        return StepFailed(f"request to agent failed: {detail}", retryable=True)
    if find(json.JSONDecodeError):
        return StepFailed("invalid JSON from agent", retryable=False)
    if type(exc) in _CODE_OF:
        assert isinstance(exc, A2AError)
        code = _CODE_OF[type(exc)]
        return StepFailed(f"agent error {code}: {exc.message}", retryable=code == INTERNAL_ERROR)
    if isinstance(exc, AgentCardResolutionError):
        return StepFailed(f"invalid agent card: {exc.message}", retryable=False)
    if isinstance(exc, A2AClientError):
        match = _RPC_ERROR.fullmatch(exc.message)
        if match:
            code = int(match.group(1))
            return StepFailed(
                f"agent error {code}: {match.group(2)}", retryable=code == INTERNAL_ERROR
            )
        if exc.message.lower().startswith("invalid"):
            return StepFailed(f"invalid response from agent: {exc.message}", retryable=False)
        # The 0.3 transport reports a JSON-RPC error of a code it does not know
        # by its message alone.
        return StepFailed(f"agent error: {exc.message}", retryable=False)
    detail = str(exc) or type(exc).__name__
    return StepFailed(f"invalid response from agent: {detail}", retryable=False)


# --- connections ----------------------------------------------------------------

_ssl_context: ssl.SSLContext | None = None
_cards: dict[str, tuple[float, AgentCard]] = {}


def _ssl() -> ssl.SSLContext:
    """One verifying SSL context for every agent client (building one costs milliseconds)."""
    global _ssl_context
    if _ssl_context is None:
        import certifi  # an httpx dependency

        _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return _ssl_context


def forget_card(url: str) -> None:
    """Drops a cached agent card (the next call reads it again)."""
    _cards.pop(url, None)


async def resolve_card(
    http: httpx.AsyncClient, agent: AgentTarget, *, cached_ok: bool = True
) -> tuple[AgentCard, bool]:
    """The agent's card: `/.well-known/agent-card.json`, else the 0.3 `agent.json`,
    and whether it came from the cache.

    Cached per URL for CARD_TTL_S; a failed call drops it.
    """
    cached = _cards.get(agent.url)
    if cached_ok and cached is not None and cached[0] > time.monotonic():
        return cached[1], True
    resolver = A2ACardResolver(http, agent.url)
    card: AgentCard | None = None
    for path in CARD_PATHS:
        try:
            async with asyncio.timeout(agent.timeout_s):
                card = await resolver.get_agent_card(relative_card_path=path)
            break
        except AgentCardResolutionError as exc:
            if exc.status_code == 404 and path != CARD_PATHS[-1]:
                continue
            if exc.status_code == 404:
                raise StepFailed(
                    f"HTTP 404 from agent: no agent card at {agent.url.rstrip('/')}"
                    f"{CARD_PATHS[0]} or {CARD_PATHS[1]}",
                    retryable=False,
                ) from exc
            raise
    assert card is not None
    _cards[agent.url] = (time.monotonic() + CARD_TTL_S, card)
    return card, False


def card_protocol(card: AgentCard) -> str:
    """The protocol version of the card's JSON-RPC interface, as the factory will pick it."""
    interface = ClientFactory._find_best_interface(  # the SDK's own choice
        list(card.supported_interfaces), protocol_bindings=[TransportProtocol.JSONRPC]
    )
    if interface is None:
        return ""
    return "0.3" if is_legacy_version(interface.protocol_version) else "1.0"


@dataclass
class _Session:
    client: Client
    protocol: str
    agent: AgentTarget
    card_from_cache: bool

    async def call(self, what: Awaitable[T]) -> T:
        """One request, bounded by the agent's timeout, its errors as StepFailed."""
        try:
            async with asyncio.timeout(self.agent.timeout_s):
                return await what
        except StepFailed:
            raise
        except Exception as exc:
            forget_card(self.agent.url)
            raise failure_for(exc, self.agent) from exc


# One HTTP connection pool per agent (URL, credentials, timeout) and event loop,
# and the SDK client built on it for the agent's current card: a client per call
# would open a new TCP connection for every step, which was most of the latency
# flowctl added to an agent call (bench W5), and building the SDK client (the
# factory, its transport, the card's interfaces) costs more per step. The SDK
# client keeps no state between calls; the SDK does not close an httpx client
# handed to it in ClientConfig. A card read again (expired, or dropped after a
# failed call) is a new object, and gets a new SDK client.
@dataclass(slots=True)
class _Pool:
    http: httpx.AsyncClient
    card: AgentCard | None = None  # the card `client` was built from
    client: Client | None = None
    protocol: str = ""


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, _Pool]] = (
    weakref.WeakKeyDictionary()
)
_MAX_POOLS = 64


def _pool_for(agent: AgentTarget, headers: dict[str, str]) -> _Pool:
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    key = (agent.url, tuple(sorted(headers.items())), agent.timeout_s, agent.egress)
    pool = pools.get(key)
    if pool is None or pool.http.is_closed:
        if len(pools) >= _MAX_POOLS:  # forget the oldest agent's pool
            oldest = pools.pop(next(iter(pools)))
            asyncio.get_running_loop().create_task(oldest.http.aclose())
        http = guarded_client(
            agent.egress, headers=headers, timeout=httpx.Timeout(agent.timeout_s), verify=_ssl()
        )
        pool = pools[key] = _Pool(http)
    return pool


def _client_for(pool: _Pool, card: AgentCard) -> tuple[Client, str]:
    """The SDK client (and protocol version) for `card` on `pool`, built once per card."""
    if pool.card is card and pool.client is not None:
        return pool.client, pool.protocol
    protocol = card_protocol(card)
    if not protocol:
        bindings = sorted({i.protocol_binding for i in card.supported_interfaces})
        raise StepFailed(
            f"agent card offers no JSON-RPC interface (only {', '.join(bindings) or 'none'})",
            retryable=False,
        )
    config = ClientConfig(
        httpx_client=pool.http,
        streaming=False,
        polling=True,  # return_immediately: a task comes back at once, we follow it
        supported_protocol_bindings=[TransportProtocol.JSONRPC],
    )
    try:
        client = ClientFactory(config).create(card)
    except ValueError as exc:
        raise StepFailed(f"cannot talk to agent: {exc}", retryable=False) from exc
    # The client it replaces holds nothing of its own to close (the pool's httpx
    # client is shared), and calls in flight may still be using it.
    pool.card, pool.client, pool.protocol = card, client, protocol
    return client, protocol


@contextlib.asynccontextmanager
async def connect(agent: AgentTarget, *, cached_ok: bool = True) -> AsyncIterator[_Session]:
    """An SDK client for `agent`, chosen by its card (shared with other calls)."""
    pool = _pool_for(agent, agent.headers())
    try:
        card, from_cache = await resolve_card(pool.http, agent, cached_ok=cached_ok)
    except StepFailed:
        raise
    except Exception as exc:
        raise failure_for(exc, agent) from exc
    client, protocol = _client_for(pool, card)
    yield _Session(client, protocol, agent, from_cache)


# --- the executor -----------------------------------------------------------------


class AgentExecutor(Executor):
    type_name = "agent"

    async def execute(self, ctx: StepContext) -> Any:
        agent = ctx.agent
        if agent is None:
            raise StepFailed(
                "no agent for this step: the worker did not resolve the step's agent",
                retryable=False,
            )
        payload = {} if ctx.payload is None else ctx.payload
        if not isinstance(payload, dict):
            raise StepFailed(
                "agent step input must be a JSON object (the step's input_mapping),"
                f" got {type(payload).__name__}",
                retryable=False,
            )
        started = time.monotonic()
        try:
            return await self._call(ctx, agent, payload, started, cached_ok=True)
        except _StaleCard:
            # The cached card may describe an agent since redeployed on another
            # protocol version: read the card again and try once more.
            forget_card(agent.url)
            return await self._call(ctx, agent, payload, started, cached_ok=False)

    async def _call(
        self,
        ctx: StepContext,
        agent: AgentTarget,
        payload: dict[str, Any],
        started: float,
        *,
        cached_ok: bool,
    ) -> Any:
        async with connect(agent, cached_ok=cached_ok) as session:
            task = await self._resume(ctx, session)
            if task is None:
                try:
                    reply = await self._send(ctx, session, payload)
                except StepFailed as exc:
                    stale = isinstance(
                        exc.__cause__, MethodNotFoundError | VersionNotSupportedError
                    )
                    if stale and session.card_from_cache:
                        raise _StaleCard from exc
                    raise
                if isinstance(reply, Message):
                    ctx.log(
                        "info",
                        "agent answered with a message",
                        protocol=session.protocol,
                        elapsed_ms=round((time.monotonic() - started) * 1000),
                    )
                    return message_output(reply)
                task = reply
                if task.status.state not in TERMINAL | INTERRUPTED:
                    await self._commit_task(ctx, session, task.id)
            task = await self._follow(ctx, session, task)
        ctx.log(
            "info",
            f"agent task {task.id} {_state_name(task.status.state)}",
            protocol=session.protocol,
            elapsed_ms=round((time.monotonic() - started) * 1000),
        )
        if task.status.state != TaskState.TASK_STATE_COMPLETED:
            raise task_failure(task)
        return task_output(task)

    async def _resume(self, ctx: StepContext, session: _Session) -> Task | None:
        """The task an earlier run of this step left in the checkpoint, if it is worth following."""
        task_id = ctx.checkpoint.get(CHECKPOINT_TASK_ID)
        if not task_id:
            return None
        try:
            task = await self._guarded(ctx, session, task_id, self._get(session, task_id))
        except StepFailed as exc:
            if not isinstance(exc.__cause__, TaskNotFoundError):
                raise
            ctx.log("warning", f"agent no longer knows task {task_id}: sending again")
            self._clear(ctx)
            return None
        earlier = ctx.checkpoint.get(CHECKPOINT_ATTEMPT) != ctx.attempt
        if earlier and task.status.state in UNSUCCESSFUL:
            ctx.log(
                "info",
                f"agent task {task_id} of an earlier attempt ended"
                f" {_state_name(task.status.state)}: sending again",
            )
            self._clear(ctx)
            return None
        ctx.log("info", f"resuming agent task {task_id}", protocol=session.protocol)
        return task

    async def _send(
        self, ctx: StepContext, session: _Session, payload: dict[str, Any]
    ) -> Message | Task:
        message = Message(
            role=Role.ROLE_USER,
            message_id=f"{ctx.idempotency_key}-{ctx.attempt}",
            context_id=ctx.idempotency_key,
            parts=[new_data_part(payload)],
            metadata={
                "flowctl": {
                    "run_id": ctx.run_id,
                    "step_id": ctx.step_id,
                    "step_name": ctx.step_name,
                    "attempt": ctx.attempt,
                }
            },
        )
        request = SendMessageRequest(
            message=message,
            configuration=SendMessageConfiguration(
                return_immediately=True, accepted_output_modes=["application/json", "text/plain"]
            ),
        )

        async def first_event() -> Message | Task:
            async for event in session.client.send_message(request):
                if event.HasField("message"):
                    return event.message
                if event.HasField("task"):
                    return event.task
            raise A2AClientError("Invalid reply: neither a message nor a task")

        return await session.call(first_event())

    async def _commit_task(self, ctx: StepContext, session: _Session, task_id: str) -> None:
        """Commits the remote task id before following it (see the module doc)."""
        ctx.checkpoint[CHECKPOINT_TASK_ID] = task_id
        ctx.checkpoint[CHECKPOINT_ATTEMPT] = ctx.attempt
        if ctx.save_checkpoint is None:
            return
        try:
            await ctx.save_checkpoint()
        except BaseException:
            # Unrecorded, the task would be orphaned and a retry would send again.
            await self._cancel_remote(ctx, session, task_id)
            raise

    async def _follow(self, ctx: StepContext, session: _Session, task: Task) -> Task:
        """Polls the task until it ends (or needs input)."""
        delay = POLL_INITIAL_S
        while task.status.state not in TERMINAL | INTERRUPTED:
            await self._guarded(ctx, session, task.id, asyncio.sleep(delay))
            delay = min(delay * POLL_FACTOR, POLL_MAX_S)
            task = await self._guarded(ctx, session, task.id, self._get(session, task.id))
        return task

    def _get(self, session: _Session, task_id: str) -> Awaitable[Task]:
        return session.call(session.client.get_task(GetTaskRequest(id=task_id, history_length=0)))

    async def _guarded(
        self, ctx: StepContext, session: _Session, task_id: str, what: Awaitable[T]
    ) -> T:
        """`what`; if the step is cancelled meanwhile, the remote task is cancelled too."""
        try:
            return await what
        except asyncio.CancelledError:
            await self._cancel_remote(ctx, session, task_id)
            raise

    async def _cancel_remote(self, ctx: StepContext, session: _Session, task_id: str) -> None:
        """Best effort: tells the agent to cancel `task_id`, waiting at most CANCEL_TIMEOUT_S."""
        try:
            async with asyncio.timeout(min(CANCEL_TIMEOUT_S, session.agent.timeout_s)):
                await session.client.cancel_task(CancelTaskRequest(id=task_id))
            ctx.log("info", f"cancelled agent task {task_id}")
        except Exception as exc:  # best effort: the step is going away anyway
            reason = failure_for(exc, session.agent).message
            ctx.log("warning", f"could not cancel agent task {task_id}: {reason}")

    @staticmethod
    def _clear(ctx: StepContext) -> None:
        ctx.checkpoint.pop(CHECKPOINT_TASK_ID, None)
        ctx.checkpoint.pop(CHECKPOINT_ATTEMPT, None)
