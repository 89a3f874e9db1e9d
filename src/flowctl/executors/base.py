"""The executor interface every step type implements.

An executor turns a step's resolved payload into an output (a JSON value). It is
cancelled cooperatively: the worker cancels the asyncio task that runs
`execute` (on a run cancel, a timeout or a lost lease), and an executor that
holds outside resources (a child process, a remote task) releases them in a
`finally` or an `except asyncio.CancelledError` block and re-raises.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import BaseModel, ValidationError

from flowctl.domain.graph import FieldError
from flowctl.domain.templates import has_references
from flowctl.security.egress import EgressPolicy

if TYPE_CHECKING:
    from flowctl.executors.agent import AgentTarget


class StepFailed(Exception):
    """The step ran and failed. `retryable=False` skips the remaining retries."""

    def __init__(self, message: str, *, output: Any = None, retryable: bool = True):
        super().__init__(message)
        self.message = message
        self.output = output
        self.retryable = retryable


@dataclass(slots=True)
class LogLine:
    level: str
    message: str
    data: dict[str, Any] | None = None


@dataclass(slots=True)
class StepContext:
    """What an executor may know about the step it runs."""

    run_id: str
    step_id: str
    step_name: str
    step_type: str
    attempt: int  # 1 for the first attempt, 2 for the first retry, ...
    payload: Any  # resolved: no ${...} left
    workflow_input: Any = None
    timeout: float | None = None
    http: httpx.AsyncClient | None = None  # the worker's, through the egress guard
    # Where outbound calls may go (a client made without `http` must use it).
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # Limits the worker enforces, so executors can cap what they keep.
    max_output_bytes: int = 1 << 20
    logs: list[LogLine] = field(default_factory=list)
    # Where an executor can remember progress it must not lose across a worker
    # crash (e.g. a remote task id), committed with the step.
    checkpoint: dict[str, Any] = field(default_factory=dict)
    # Commits `checkpoint` now (before the step ends), if the worker offers it.
    save_checkpoint: Callable[[], Awaitable[None]] | None = None
    # The registered agent an `agent` step calls (filled in by the worker).
    agent: AgentTarget | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across retries of this step in this run: safe for remote dedup."""
        return f"flowctl-{self.run_id}-{self.step_id}"

    def log(self, level: str, message: str, **data: Any) -> None:
        self.logs.append(LogLine(level, message, data or None))


class Executor(abc.ABC):
    """One step type. Subclasses set `type_name` and implement `execute`."""

    type_name: ClassVar[str]
    # A Pydantic model of the payload, checked when a definition is created (if
    # the payload has no ${...}) and again on the resolved payload before a run.
    payload_model: ClassVar[type[BaseModel] | None] = None
    # True for step types that run code on this machine (generic, ci, python).
    runs_code: ClassVar[bool] = False

    def validate_payload(self, payload: Any, loc: str = "payload") -> list[FieldError]:
        """Problems with a payload as written in a definition."""
        if self.payload_model is None or has_references(payload):
            return []
        return self._model_errors(payload, loc)

    def parse_payload(self, payload: Any) -> Any:
        """The resolved payload as `payload_model`, or StepFailed if it is invalid."""
        if self.payload_model is None:
            return payload
        errors = self._model_errors(payload, "payload")
        if errors:
            raise StepFailed("; ".join(str(e) for e in errors), retryable=False)
        return self.payload_model.model_validate(payload)

    def _model_errors(self, payload: Any, loc: str) -> list[FieldError]:
        assert self.payload_model is not None
        try:
            self.payload_model.model_validate(payload)
        except ValidationError as exc:
            return [
                FieldError(".".join([loc, *(str(p) for p in err["loc"])]), err["msg"], err["type"])
                for err in exc.errors(include_url=False)
            ]
        return []

    @abc.abstractmethod
    async def execute(self, ctx: StepContext) -> Any:
        """Run the step; return its output or raise StepFailed."""


class ExecutorRegistry:
    """Executors by type name."""

    def __init__(self, executors: Mapping[str, Executor] | None = None):
        self._executors: dict[str, Executor] = dict(executors or {})

    def register(self, executor: Executor) -> None:
        self._executors[executor.type_name] = executor

    def get(self, type_name: str) -> Executor:
        return self._executors[type_name]

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._executors

    @property
    def type_names(self) -> frozenset[str]:
        return frozenset(self._executors)
