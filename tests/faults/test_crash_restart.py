"""kill -9 the server mid-run, start it again: the run completes, and no step
that had completed runs a second time. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import psutil

from helpers import Api, sh, task, wait_for

FAST_RECOVERY = {"lease_ttl": 2, "maintenance_interval": 0.5}


def test_killed_server_resumes_the_run_after_restart(procs, tmp_path: Path):
    ran = tmp_path / "ran.log"
    names = [f"t{i}" for i in range(8)]
    tasks = [
        {
            "name": name,
            "type": "generic",
            "payload": sh(f"echo {name} >> {ran}; sleep 0.3"),
            "dependencies": [names[i - 1]] if i else [],
        }
        for i, name in enumerate(names)
    ]
    server = procs.server(**FAST_RECOVERY)
    api = Api(server.url)
    wf = api.submit({"name": "survives a crash", "tasks": tasks})
    api.wait(wf["id"], lambda wf: sum(t["status"] == "completed" for t in wf["tasks"]) >= 3)
    completed_before = {
        t["name"] for t in api.workflow(wf["id"])["tasks"] if t["status"] == "completed"
    }
    server.kill()

    restarted = procs.server(**FAST_RECOVERY)
    api = Api(restarted.url)
    done = api.wait(wf["id"], timeout=60)
    assert done["status"] == "completed", done
    runs = Counter(ran.read_text().split())
    assert set(runs) == set(names)
    for name in completed_before:
        assert runs[name] == 1, f"{name} had completed before the crash but ran {runs[name]} times"
    # At most the one step in flight at the kill ran twice.
    assert sum(n - 1 for n in runs.values()) <= 1, runs


def test_accepted_run_survives_an_immediate_kill(procs):
    # Accepted means written: a run acknowledged with 201 is never lost, even
    # if the server dies before any worker looks at it.
    server = procs.server(**FAST_RECOVERY)
    api = Api(server.url)
    wf = api.submit(
        {"name": "acked", "tasks": [{"name": f"n{i}", "type": "noop"} for i in range(20)]}
    )
    server.kill()
    api = Api(procs.server(**FAST_RECOVERY).url)
    done = api.wait(wf["id"], timeout=30)
    assert done["status"] == "completed"
    assert len(done["tasks"]) == 20


def test_sigterm_hands_running_steps_back_without_using_a_retry(procs):
    server = procs.server(shutdown_grace=0.2, **FAST_RECOVERY)
    api = Api(server.url)
    wf = api.submit(
        {
            "name": "interrupted",
            "tasks": [{"name": "s", "type": "sleep", "payload": {"seconds": 2}, "max_retries": 0}],
        }
    )
    api.wait_task(wf["id"], "s", "running")
    # uvicorn re-raises the SIGTERM after its graceful shutdown: -15 is clean.
    assert server.stop(timeout=10) in (0, -15)
    # An API-only process shows what the worker left behind: the step was
    # handed back (pending), not left running for lease expiry to find.
    api_only = procs.server("--no-worker")
    assert task(Api(api_only.url).workflow(wf["id"]), "s")["status"] == "pending"
    api_only.stop()
    api = Api(procs.server(**FAST_RECOVERY).url)
    done = api.wait(wf["id"], timeout=30)
    assert done["status"] == "completed"
    assert task(done, "s")["retry_count"] == 0


def test_restart_recovery_does_not_requeue_what_the_new_process_claimed(sqlite_procs, tmp_path):
    # Regression: recovery of a dead process's steps once ran concurrently with
    # the new dispatcher and requeued steps the new process had just claimed.
    ran = tmp_path / "ran.log"
    server = sqlite_procs.server("--workers", "1", **FAST_RECOVERY)
    api = Api(server.url)
    wf = api.submit(
        {
            "name": "one slot",
            "tasks": [
                {
                    "name": "a",
                    "type": "generic",
                    "priority": 9,
                    "payload": sh(f"echo a >> {ran}; sleep 1"),
                },
                *(
                    {"name": f"b{i}", "type": "generic", "payload": sh(f"echo b{i} >> {ran}")}
                    for i in range(5)
                ),
            ],
        }
    )
    api.wait_task(wf["id"], "a", "running")
    server.kill()
    api = Api(sqlite_procs.server("--workers", "8", **FAST_RECOVERY).url)
    done = api.wait(wf["id"], timeout=30)
    assert done["status"] == "completed"
    runs = Counter(ran.read_text().split())
    assert all(runs[f"b{i}"] == 1 for i in range(5)), runs


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_generic_command_dies_with_a_killed_server(sqlite_procs):
    # Without this the command would go on running beside its re-run.
    seconds = f"{600 + os.getpid() % 1000}.{time.time_ns() % 1000:03d}"  # a unique argv
    server = sqlite_procs.server()
    api = Api(server.url)
    wf = api.submit(
        {
            "name": "orphan",
            "tasks": [
                {"name": "s", "type": "generic", "payload": {"command": "sleep", "args": [seconds]}}
            ],
        }
    )
    api.wait_task(wf["id"], "s", "running")

    def child() -> int | None:
        for proc in psutil.process_iter(["cmdline"]):
            if proc.info["cmdline"] == ["sleep", seconds]:
                return proc.pid
        return None

    wait_for(lambda: child() is not None, what="the command to start")
    pid = child()
    assert pid is not None and _running(pid)
    server.kill()
    wait_for(lambda: not _running(pid), timeout=5, what="the command to die with the server")
