"""Scale-out on PostgreSQL: one API process, separate `flowctl worker`
processes, and what happens when workers die, stall or lose the database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import IN_CI, Api, sh, task, wait_for

pytestmark = pytest.mark.postgres

# Short leases so a dead worker's steps come back within seconds.
LEASES = {"lease_ttl": 2, "maintenance_interval": 0.5}


def appending_tasks(count: int, log: Path, extra: str = "") -> list[dict]:
    return [
        {"name": f"t{i}", "type": "generic", "payload": sh(f"echo t{i} >> {log}{extra}")}
        for i in range(count)
    ]


def test_two_workers_run_500_tasks_exactly_once(pg_procs, tmp_path: Path):
    log = tmp_path / "executions.log"
    api = Api(pg_procs.server("--no-worker", **LEASES).url)
    pg_procs.worker(worker_concurrency=20, **LEASES)
    pg_procs.worker(worker_concurrency=20, **LEASES)
    wf = api.submit(
        {
            "name": "five hundred",
            "config": {"max_concurrency": 40},
            "tasks": appending_tasks(500, log),
        }
    )
    done = api.wait(wf["id"], timeout=120)
    assert done["status"] == "completed", done["error"]
    executions = Counter(log.read_text().split())
    assert len(executions) == 500
    assert set(executions.values()) == {1}, executions.most_common(3)


def test_killing_a_worker_mid_run_still_completes_it(pg_procs, tmp_path: Path):
    log = tmp_path / "executions.log"
    api = Api(pg_procs.server("--no-worker", **LEASES).url)
    doomed = pg_procs.worker(worker_concurrency=10, **LEASES)
    pg_procs.worker(worker_concurrency=10, **LEASES)
    wf = api.submit(
        {
            "name": "survivor",
            "config": {"max_concurrency": 20},
            "tasks": appending_tasks(200, log, "; sleep 0.1"),
        }
    )
    api.wait(wf["id"], lambda wf: sum(t["status"] == "completed" for t in wf["tasks"]) >= 40)
    completed_before = {
        t["name"] for t in api.workflow(wf["id"])["tasks"] if t["status"] == "completed"
    }
    doomed.kill()
    done = api.wait(wf["id"], timeout=120)
    assert done["status"] == "completed", done["error"]
    executions = Counter(log.read_text().split())
    assert len(executions) == 200
    for name in completed_before:
        assert executions[name] == 1, name
    # Only the steps the dead worker had in flight may have run twice.
    assert sum(n - 1 for n in executions.values()) <= 10


def test_worker_killed_right_after_claiming_has_its_step_reclaimed(pg_procs):
    api = Api(pg_procs.server("--no-worker", **LEASES).url)
    first = pg_procs.worker(**LEASES)
    wf = api.submit(
        {"name": "orphan", "tasks": [{"name": "s", "type": "sleep", "payload": {"seconds": 0.5}}]}
    )
    api.wait_task(wf["id"], "s", "running")
    first.kill()
    pg_procs.worker(**LEASES)
    done = api.wait(wf["id"], timeout=30)
    assert done["status"] == "completed"
    # A lapsed lease is not the step's fault: it does not use up a retry.
    assert task(done, "s")["retry_count"] == 0


def test_paused_worker_cannot_overwrite_the_result_of_the_one_that_took_over(
    pg_procs, tmp_path: Path
):
    api = Api(pg_procs.server("--no-worker", **LEASES).url)
    stalled = pg_procs.worker(**LEASES)
    wf = api.submit(
        {
            "name": "fenced",
            "tasks": [
                {
                    "name": "s",
                    "type": "generic",
                    "max_retries": 0,
                    "payload": sh("echo attempt-$$; sleep 1"),
                }
            ],
        }
    )
    api.wait_task(wf["id"], "s", "running")
    stalled.signal(signal.SIGSTOP)
    try:
        pg_procs.worker(**LEASES)
        done = api.wait(wf["id"], timeout=30)
        assert done["status"] == "completed"
        result = task(done, "s")["result"]
        stalled.signal(signal.SIGCONT)
        # The stalled worker wakes up holding a finished command and a stale
        # lease; give it time to try to report, and check nothing changed.
        time.sleep(3)
        after = api.workflow(wf["id"])
        assert after["status"] == "completed"
        assert task(after, "s")["result"] == result
        assert stalled.proc.poll() is None, "the stalled worker should recover, not crash"
    finally:
        stalled.signal(signal.SIGCONT)


@pytest.mark.serial
def test_postgres_outage_of_five_seconds_fails_no_run(pg_procs, tmp_path: Path):
    """Stops the local PostgreSQL cluster: runs alone (see the Makefile)."""
    cluster = _local_cluster()
    if cluster is None:
        reason = "no local PostgreSQL cluster to stop (pg_lsclusters not found)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    api = Api(pg_procs.server("--no-worker", **LEASES).url)
    pg_procs.worker(**LEASES)
    wf = api.submit(
        {
            "name": "outage",
            "tasks": [
                {
                    "name": f"s{i}",
                    "type": "sleep",
                    "payload": {"seconds": 0.5},
                    "dependencies": [f"s{i - 1}"] if i else [],
                }
                for i in range(16)
            ],
        }
    )
    api.wait(wf["id"], lambda wf: task(wf, "s1")["status"] == "completed")
    _pg_ctl(cluster, "stop")
    try:
        time.sleep(5)
    finally:
        _pg_ctl(cluster, "start")
    done = api.wait(wf["id"], timeout=90)
    assert done["status"] == "completed", done
    assert all(t["status"] == "completed" for t in done["tasks"])


def _local_cluster() -> tuple[str, str] | None:
    try:
        out = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
        ).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        version, name, port, *_ = line.split()
        if port == "5432":
            return version, name
    return None


def _pg_ctl(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, "--", "-m", "fast"]
        if action == "stop"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        env={**os.environ},
        capture_output=True,
    )
    if action == "start":
        wait_for(lambda: _pg_ready(), timeout=30, what="PostgreSQL to accept connections")


def _pg_ready() -> bool:
    from flowctl.testing.processes import postgres_reachable
    from helpers import PG_URL

    return postgres_reachable(PG_URL, timeout=1)


def test_cancel_reaches_a_step_running_in_another_process(pg_procs):
    api = Api(pg_procs.server("--no-worker", **LEASES).url)
    pg_procs.worker(**LEASES)
    wf = api.submit(
        {"name": "remote", "tasks": [{"name": "s", "type": "sleep", "payload": {"seconds": 60}}]}
    )
    api.wait_task(wf["id"], "s", "running")
    started = time.monotonic()
    assert api.http.put(f"/api/v1/workflows/{wf['id']}/cancel").status_code == 200
    done = api.wait(wf["id"], lambda wf: task(wf, "s")["status"] == "cancelled", timeout=5)
    assert done["status"] == "cancelled"
    # The worker got the NOTIFY and stopped the step: its slot is free again.
    wait_for(
        lambda: api.http.get("/api/v1/metrics").json()["workers"]["busy_slots"] == 0,
        timeout=2,
        what="the worker to stop the cancelled step",
    )
    assert time.monotonic() - started < 2
