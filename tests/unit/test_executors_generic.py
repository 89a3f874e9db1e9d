"""The `generic` executor against real child processes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from flowctl.executors.base import StepContext, StepFailed
from flowctl.executors.generic import GenericExecutor

PY = sys.executable


def ctx_for(payload: dict[str, Any], **kwargs: Any) -> StepContext:
    return StepContext(
        run_id="r1",
        step_id="s1",
        step_name="x",
        step_type="generic",
        attempt=1,
        payload=payload,
        **kwargs,
    )


def run(payload: dict[str, Any], **kwargs: Any) -> Any:
    return asyncio.run(GenericExecutor().execute(ctx_for(payload, **kwargs)))


def fail(payload: dict[str, Any], **kwargs: Any) -> StepFailed:
    with pytest.raises(StepFailed) as info:
        run(payload, **kwargs)
    return info.value


def py(code: str, *args: str) -> dict[str, Any]:
    return {"command": PY, "args": ["-c", code, *args]}


def test_stdout_and_result_fields() -> None:
    result = run({"command": "echo hello world"})
    assert result["exit_code"] == 0
    assert result["stdout"] == "hello world\n"
    assert result["stderr"] == ""
    assert result["stdout_truncated"] is False
    assert result["stderr_truncated"] is False
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] >= 0
    assert result["json"] is None


def test_command_is_split_and_args_appended() -> None:
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    result = run({"command": f"{PY} -c '{code}' 'two words' plain", "args": ["x y", "z"]})
    assert result["json"] == ["two words", "plain", "x y", "z"]


def test_no_shell_interpretation() -> None:
    result = run({"command": "printf", "args": ["%s|", "$HOME", ";", "echo", "x", "*", "`id`"]})
    assert result["stdout"] == "$HOME|;|echo|x|*|`id`|"


def test_environment_passed_and_server_variables_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCTL_SECRET_TEST", "hunter2")
    monkeypatch.setenv("UNRELATED_TEST_VAR", "kept")
    code = (
        "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
        "['FLOWCTL_SECRET_TEST', 'UNRELATED_TEST_VAR', 'STEP_VAR']}))"
    )
    result = run({**py(code), "environment": {"STEP_VAR": "from step"}})
    assert result["json"] == {
        "FLOWCTL_SECRET_TEST": None,
        "UNRELATED_TEST_VAR": "kept",
        "STEP_VAR": "from step",
    }


def test_cwd_and_stdin(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(sys.stdin.read().upper())"
    result = run({**py(code), "cwd": str(tmp_path), "stdin": "piped in"})
    assert result["stdout"].splitlines() == [str(tmp_path), "PIPED IN"]


def test_nonzero_exit_fails_with_stderr_and_output() -> None:
    err = fail(py("import sys; print('partial'); sys.stderr.write('boom happened\\n'); exit(3)"))
    assert err.message == "exit code 3: boom happened"
    assert err.retryable is True
    assert err.output["exit_code"] == 3
    assert err.output["stdout"] == "partial\n"


def test_nonzero_exit_without_stderr() -> None:
    err = fail(py("exit(7)"))
    assert err.message == "exit code 7"


def test_killed_by_signal() -> None:
    err = fail(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert err.message == "killed by signal SIGKILL"
    assert err.output["exit_code"] == -9


def test_command_not_found_is_not_retryable() -> None:
    err = fail({"command": "definitely-not-a-command-flowctl --flag"})
    assert err.message == "command not found: definitely-not-a-command-flowctl"
    assert err.retryable is False


def test_missing_cwd_is_not_retryable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    err = fail({"command": "echo hi", "cwd": missing})
    assert err.message == f"working directory not found: {missing}"
    assert err.retryable is False


def test_not_executable_is_not_retryable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    err = fail({"command": str(script)})
    assert err.message.startswith("permission denied")
    assert err.retryable is False


def test_output_is_capped_and_child_does_not_block() -> None:
    # Far more than a pipe buffer, on both streams, so a reader that stopped
    # reading at the cap would deadlock the child.
    code = "import sys; sys.stdout.write('a' * 2_000_000); sys.stderr.write('b' * 2_000_000)"
    ctx = ctx_for(py(code), max_output_bytes=400)

    async def bounded() -> Any:
        async with asyncio.timeout(10):  # a blocked child shows up as TimeoutError
            return await GenericExecutor().execute(ctx)

    result = asyncio.run(bounded())
    assert result["stdout"] == "a" * 100
    assert result["stderr"] == "b" * 100
    assert result["stdout_truncated"] is True
    assert result["stderr_truncated"] is True
    assert result["json"] is None


def test_json_stdout_is_parsed() -> None:
    result = run(py("import json; print(json.dumps({'n': 1, 'xs': [1, 2]}))"))
    assert result["json"] == {"n": 1, "xs": [1, 2]}
    assert run(py("print('[1, 2')"))["json"] is None
    assert run(py("print('42')"))["json"] is None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.parametrize("ignore_term", [False, True])
def test_cancel_kills_the_whole_process_group(tmp_path: Path, ignore_term: bool) -> None:
    pids_file = tmp_path / "pids"
    code = (
        "import os, signal, subprocess, sys, time\n"
        f"if {ignore_term}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "with open(sys.argv[1], 'w') as f: f.write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(30)\n"
    )
    ctx = ctx_for(py(code, str(pids_file)))

    async def scenario() -> list[int]:
        task = asyncio.create_task(GenericExecutor().execute(ctx))
        deadline = time.monotonic() + 10
        while not (pids_file.exists() and len(pids_file.read_text().split()) == 2):
            assert time.monotonic() < deadline, "child never started"
            assert not task.done()
            await asyncio.sleep(0.02)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert all(_alive(pid) for pid in pids)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids

    started = time.monotonic()
    pids = asyncio.run(scenario())
    # SIGTERM is ignored in one case: the SIGKILL after the grace period must land.
    assert _wait_gone(pids, within=3.0) == []
    assert time.monotonic() - started < 10


def test_timeout_stops_the_child() -> None:
    ctx = ctx_for(py("import time; time.sleep(30)"))

    async def scenario() -> None:
        async with asyncio.timeout(0.5):
            await GenericExecutor().execute(ctx)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(scenario())
    assert time.monotonic() - started < 5
    assert not [
        p
        for p in psutil.Process().children(recursive=True)
        if p.cmdline()[-1:] == ["time.sleep(30)"]
    ]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({}, "payload.command"),
        ({"command": ""}, "payload.command"),
        ({"command": "   "}, "payload.command"),
        ({"command": "echo 'unclosed"}, "payload.command"),
        ({"command": "echo", "shell": True}, "payload.shell"),
        ({"command": "echo", "environment": {"A=B": "x"}}, "payload.environment"),
    ],
)
def test_payload_validation(payload: dict[str, Any], loc: str) -> None:
    errors = GenericExecutor().validate_payload(payload)
    assert [e.loc for e in errors] == [loc]


def test_valid_payload_and_metadata() -> None:
    executor = GenericExecutor()
    assert executor.validate_payload({"command": "python script.py", "args": ["-v"]}) == []
    assert executor.type_name == "generic"
    assert executor.runs_code is True


def test_os_environment_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCTL_SECRET_TEST", "hunter2")
    run({"command": "true"})
    assert os.environ["FLOWCTL_SECRET_TEST"] == "hunter2"
