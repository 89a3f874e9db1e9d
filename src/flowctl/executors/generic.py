"""`generic`: runs a command on this machine, never through a shell.

The child gets its own process group so that a cancel (run cancel, step
timeout, lost lease) can stop everything it spawned, not just the first process.
On Linux it is also killed if the flowctl process dies without cleaning up
(kill -9, OOM): the step is then run again elsewhere, and the orphan must not
go on beside it. (Processes the command itself spawns are not covered.)
Its output is kept up to a cap but always drained, so a chatty child never
blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import signal
import sys
import time
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowctl.executors.base import Executor, StepContext, StepFailed

# Server configuration (and its secrets) lives in FLOWCTL_* variables.
_HIDDEN_ENV_PREFIX = "FLOWCTL_"
_TERM_GRACE_SECONDS = 2.0
_REAP_SECONDS = 5.0
_CHUNK = 64 * 1024
_MESSAGE_STDERR_CHARS = 2000


class GenericPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    args: list[str] = []
    environment: dict[str, str] = {}
    cwd: str | None = None
    stdin: str | None = None

    @field_validator("command")
    @classmethod
    def _splits_into_argv(cls, value: str) -> str:
        # Checked here so that bad quoting is reported when the definition is created.
        if not shlex.split(value):
            raise ValueError("command is empty")
        return value

    @field_validator("environment")
    @classmethod
    def _valid_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"invalid environment variable name: {name!r}")
        return value

    def argv(self) -> list[str]:
        return [*shlex.split(self.command), *self.args]


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The server's environment without FLOWCTL_* variables, plus the step's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HIDDEN_ENV_PREFIX)}
    env.update(extra)
    return env


class _CappedReader:
    """Reads a pipe to EOF, keeping the first `cap` bytes."""

    def __init__(self, stream: asyncio.StreamReader, cap: int):
        self._stream = stream
        self._cap = cap
        self.data = bytearray()
        self.truncated = False

    async def run(self) -> None:
        while chunk := await self._stream.read(_CHUNK):
            room = self._cap - len(self.data)
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[: max(room, 0)]
            self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Writes stdin and closes it; a child that exits without reading it is fine."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()


_PR_SET_PDEATHSIG = 1


def _dies_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when this process dies."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:  # in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the child's group, give it a grace period, then SIGKILL the group.

    The SIGKILL is sent even if the leader exited after SIGTERM, since other
    members may ignore SIGTERM; it is sent in a `finally` so that a second
    cancel during the grace period cannot leave the group running.
    """
    pgid = proc.pid  # start_new_session: the child leads its own group
    _signal_group(pgid, signal.SIGTERM)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_TERM_GRACE_SECONDS):
                await proc.wait()
    finally:
        _signal_group(pgid, signal.SIGKILL)
    # Bounded: wait() also waits for the pipes, which a process that left the
    # group (setsid) may still hold open.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_REAP_SECONDS):
            await proc.wait()


def _exit_description(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _parse_json(stdout: str, truncated: bool) -> Any:
    text = stdout.strip()
    if truncated or not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _start_failure(exc: OSError, argv: list[str], cwd: str | None) -> StepFailed:
    """A clear message for a command that could not be started."""
    cwd_failed = cwd is not None and exc.filename == cwd
    subject = f"working directory {cwd}" if cwd_failed else f"command {argv[0]}"
    if isinstance(exc, FileNotFoundError):
        if cwd_failed:
            return StepFailed(f"working directory not found: {cwd}", retryable=False)
        return StepFailed(f"command not found: {argv[0]}", retryable=False)
    if isinstance(exc, PermissionError):
        return StepFailed(f"permission denied: {subject}", retryable=False)
    if isinstance(exc, NotADirectoryError):
        return StepFailed(f"not a directory: {subject}", retryable=False)
    # Anything else (EAGAIN, ENOMEM, ...) is the machine's state, not the step's.
    return StepFailed(f"could not start {subject}: {exc.strerror or exc}", retryable=True)


class GenericExecutor(Executor):
    type_name = "generic"
    payload_model = GenericPayload
    runs_code = True

    async def execute(self, ctx: StepContext) -> Any:
        payload: GenericPayload = self.parse_payload(ctx.payload)
        argv = payload.argv()
        # stdout, stderr and stdout parsed as `json` all go into one output that
        # must fit max_output_bytes once serialised: a quarter each leaves room.
        cap = max(ctx.max_output_bytes // 4, 0)
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                # No stdin given: the child must not read the server's.
                stdin=PIPE if payload.stdin is not None else DEVNULL,
                stdout=PIPE,
                stderr=PIPE,
                cwd=payload.cwd,
                env=child_environment(payload.environment),
                start_new_session=True,
                preexec_fn=_dies_with_parent(),
            )
        except OSError as exc:
            raise _start_failure(exc, argv, payload.cwd) from exc
        except ValueError as exc:  # e.g. an embedded NUL byte in an argument
            raise StepFailed(f"invalid command: {exc}", retryable=False) from exc
        ctx.log("info", "started command", program=argv[0], pid=proc.pid)

        assert proc.stdout is not None and proc.stderr is not None
        stdout = _CappedReader(proc.stdout, cap)
        stderr = _CappedReader(proc.stderr, cap)
        finished = False
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(stdout.run())
                tasks.create_task(stderr.run())
                if payload.stdin is not None:
                    assert proc.stdin is not None
                    tasks.create_task(_feed(proc.stdin, payload.stdin.encode()))
                returncode = await proc.wait()
            finished = True
        finally:
            if not finished:
                ctx.log("warning", "stopping command", pid=proc.pid)
                await _stop_group(proc)

        out_text = stdout.text()
        err_text = stderr.text()
        result = {
            "exit_code": returncode,
            "stdout": out_text,
            "stderr": err_text,
            "stdout_truncated": stdout.truncated,
            "stderr_truncated": stderr.truncated,
            "duration_ms": round((time.monotonic() - started) * 1000),
            "json": _parse_json(out_text, stdout.truncated),
        }
        ctx.log("info", "command finished", exit_code=returncode)
        if returncode == 0:
            return result
        message = _exit_description(returncode)
        tail = err_text.strip()[-_MESSAGE_STDERR_CHARS:].strip()
        if tail:
            message = f"{message}: {tail}"
        raise StepFailed(message, output=result, retryable=True)
