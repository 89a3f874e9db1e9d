"""The FlowCtl workflow API driven over HTTP against a real server, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from helpers import TERMINAL, sh, task


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_spec_example_runs_with_a_generic_task(api):
    # The "Create Workflow" example of specs/flowctl-api.md, with `generic`
    # tasks standing in for `etl` (which comes later).
    created = api.submit(
        {
            "name": "Data Processing Pipeline",
            "description": "Process daily data files",
            "config": {
                "max_concurrency": 5,
                "timeout": "1h",
                "retry_policy": {"max_attempts": 3, "initial_delay": "1s", "max_delay": "5m"},
            },
            "tasks": [
                {
                    "name": "extract_data",
                    "type": "generic",
                    "payload": {"command": "echo", "args": ["s3://bucket/data.csv"]},
                    "max_retries": 3,
                    "priority": 1,
                },
                {
                    "name": "validate_data",
                    "type": "generic",
                    "dependencies": ["extract_data"],
                    "payload": {"command": "true"},
                    "priority": 2,
                },
            ],
        }
    )
    assert created["status"] in ("pending", "running")
    assert created["config"]["max_concurrency"] == 5
    done = api.wait(created["id"])
    assert done["status"] == "completed", done
    extract, validate = task(done, "extract_data"), task(done, "validate_data")
    assert extract["result"]["stdout"] == "s3://bucket/data.csv\n"
    assert extract["result"]["exit_code"] == 0
    assert validate["max_retries"] == 2  # retry_policy.max_attempts 3 = 1 try + 2 retries
    for t in (extract, validate):
        assert t["status"] == "completed"
        assert t["retry_count"] == 0
        assert t["started_at"] and t["completed_at"]
        assert ts(t["started_at"]) <= ts(t["completed_at"])
    # The task endpoints agree with the workflow.
    tasks = api.http.get(f"/api/v1/workflows/{created['id']}/tasks").json()["tasks"]
    assert {t["name"] for t in tasks} == {"extract_data", "validate_data"}
    one = api.http.get(f"/api/v1/tasks/{extract['id']}").json()
    assert one["result"] == extract["result"]
    assert one["workflow_id"] == created["id"]


def test_diamond_runs_in_dependency_order(api):
    wf = api.submit(
        {
            "name": "diamond",
            "tasks": [
                {"name": "a", "type": "sleep", "payload": {"seconds": 0.05}},
                {"name": "b", "type": "sleep", "payload": {"seconds": 0.05}, "dependencies": ["a"]},
                {"name": "c", "type": "noop", "dependencies": ["a"]},
                {"name": "d", "type": "noop", "dependencies": ["b", "c"]},
            ],
        }
    )
    done = api.wait(wf["id"])
    assert done["status"] == "completed"
    for name in "abcd":
        t = task(done, name)
        for dep in t["dependencies"]:
            assert ts(t["started_at"]) >= ts(task(done, dep)["completed_at"]), (name, dep)
    assert ts(done["completed_at"]) >= ts(task(done, "d")["completed_at"])


def test_outputs_flow_into_dependent_payloads(api):
    wf = api.submit(
        {
            "name": "templated",
            "tasks": [
                {"name": "emit", "type": "generic", "payload": sh("echo '{\"rows\": 42}'")},
                {
                    "name": "use",
                    "type": "noop",
                    "dependencies": ["emit"],
                    "payload": {
                        "rows": "${emit.output.json.rows}",
                        "text": "n=${emit.output.json.rows}",
                    },
                },
            ],
        }
    )
    done = api.wait(wf["id"])
    assert done["status"] == "completed", done
    assert task(done, "use")["result"] == {"rows": 42, "text": "n=42"}


def test_failing_command_is_retried_then_fails_the_workflow(api, tmp_path: Path):
    attempts = tmp_path / "attempts"
    wf = api.submit(
        {
            "name": "failing",
            "config": {"retry_policy": {"initial_delay": "50ms", "max_delay": "200ms"}},
            "tasks": [
                {
                    "name": "flaky",
                    "type": "generic",
                    "max_retries": 2,
                    "payload": sh(f"echo x >> {attempts}; echo 'disk on fire' >&2; exit 3"),
                },
                {"name": "after", "type": "noop", "dependencies": ["flaky"]},
            ],
        }
    )
    done = api.wait(wf["id"])
    flaky = task(done, "flaky")
    assert flaky["status"] == "failed"
    assert flaky["retry_count"] == 2
    assert "exit code 3" in flaky["error"] and "disk on fire" in flaky["error"]
    assert flaky["result"]["exit_code"] == 3
    assert attempts.read_text().count("x") == 3  # one try and two retries
    assert done["status"] == "failed"
    assert "flaky" in done["error"]
    assert task(done, "after")["status"] in ("cancelled", "skipped")


def test_higher_priority_runs_first_under_max_concurrency_one(api):
    wf = api.submit(
        {
            "name": "priorities",
            "config": {"max_concurrency": 1},
            "tasks": [
                {"name": f"p{p}", "type": "sleep", "payload": {"seconds": 0.02}, "priority": p}
                for p in (3, 1, 5, 2, 4)
            ],
        }
    )
    done = api.wait(wf["id"])
    assert done["status"] == "completed"
    order = sorted(done["tasks"], key=lambda t: ts(t["started_at"]))
    assert [t["name"] for t in order] == ["p5", "p4", "p3", "p2", "p1"]
    # max_concurrency 1: no two tasks overlapped.
    for earlier, later in itertools.pairwise(order):
        assert ts(later["started_at"]) >= ts(earlier["completed_at"])


def test_run_timeout_fails_the_workflow(api):
    started = time.monotonic()
    wf = api.submit(
        {
            "name": "too slow",
            "config": {"timeout": "1s"},
            "tasks": [
                {"name": "slow", "type": "sleep", "payload": {"seconds": 30}},
                {"name": "never", "type": "noop", "dependencies": ["slow"]},
            ],
        }
    )
    done = api.wait(wf["id"], timeout=15)
    assert done["status"] == "failed"
    assert "timed out" in done["error"]
    assert time.monotonic() - started < 5
    assert task(done, "slow")["status"] in ("failed", "cancelled")
    assert task(done, "never")["status"] in ("cancelled", "skipped")


def test_task_timeout_fails_the_attempt(api):
    wf = api.submit(
        {
            "name": "task timeout",
            "tasks": [
                {
                    "name": "slow",
                    "type": "sleep",
                    "payload": {"seconds": 30},
                    "timeout": "300ms",
                    "max_retries": 0,
                }
            ],
        }
    )
    done = api.wait(wf["id"], timeout=10)
    slow = task(done, "slow")
    assert slow["status"] == "failed"
    assert "timed out" in slow["error"]
    assert slow["timeout"] == "300ms"
    assert done["status"] == "failed"


def test_cancel_stops_a_running_sleep_within_a_second(api):
    wf = api.submit(
        {
            "name": "to cancel",
            "tasks": [
                {"name": "sleeper", "type": "sleep", "payload": {"seconds": 60}},
                {"name": "next", "type": "noop", "dependencies": ["sleeper"]},
            ],
        }
    )
    api.wait_task(wf["id"], "sleeper", "running")
    started = time.monotonic()
    resp = api.http.put(f"/api/v1/workflows/{wf['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json() == {"message": "Workflow cancelled"}
    done = api.wait(
        wf["id"],
        lambda wf: (
            wf["status"] == "cancelled"
            and all(t["status"] in TERMINAL | {"skipped"} for t in wf["tasks"])
        ),
        timeout=5,
    )
    assert time.monotonic() - started < 1.0
    assert task(done, "sleeper")["status"] == "cancelled"
    assert task(done, "next")["status"] == "cancelled"
    assert done["completed_at"] is not None


def test_cancel_kills_a_running_command(api, tmp_path: Path):
    pid_file = tmp_path / "pid"
    wf = api.submit(
        {
            "name": "kill me",
            "tasks": [
                {
                    "name": "long",
                    "type": "generic",
                    "payload": sh(f"echo $$ > {pid_file}; sleep 60"),
                }
            ],
        }
    )
    api.wait_task(wf["id"], "long", "running")
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    assert api.http.put(f"/api/v1/workflows/{wf['id']}/cancel").status_code == 200
    api.wait(wf["id"], lambda wf: task(wf, "long")["status"] == "cancelled", timeout=5)
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, "the command outlived its cancelled task"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie awaiting its parent's wait() is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_concurrent_cancels_make_exactly_one_transition(api):
    wf = api.submit(
        {"name": "racing", "tasks": [{"name": "s", "type": "sleep", "payload": {"seconds": 30}}]}
    )
    api.wait_task(wf["id"], "s", "running")
    url = f"/api/v1/workflows/{wf['id']}/cancel"
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: api.http.put(url).status_code, range(8)))
    assert codes == [200] + [409] * 7
    done = api.wait(wf["id"])
    assert done["status"] == "cancelled"


def test_cancel_racing_completion_ends_in_one_consistent_state(api):
    for i in range(10):
        wf = api.submit({"name": f"race {i}", "tasks": [{"name": "n", "type": "noop"}]})
        resp = api.http.put(f"/api/v1/workflows/{wf['id']}/cancel")
        done = api.wait(wf["id"])
        if resp.status_code == 200:
            assert done["status"] == "cancelled"
        else:
            assert resp.status_code == 409, resp.text
            assert done["status"] == "completed"
            assert task(done, "n")["status"] == "completed"


def test_cancel_of_a_finished_workflow_is_a_conflict(api):
    wf = api.submit({"name": "quick", "tasks": [{"name": "n", "type": "noop"}]})
    api.wait(wf["id"])
    resp = api.http.put(f"/api/v1/workflows/{wf['id']}/cancel")
    assert resp.status_code == 409
    assert "already completed" in resp.json()["error"]
    assert api.workflow(wf["id"])["status"] == "completed"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workflows/00000000-0000-0000-0000-000000000000",
        "/api/v1/workflows/00000000-0000-0000-0000-000000000000/tasks",
        "/api/v1/tasks/00000000-0000-0000-0000-000000000000",
        "/api/v1/workflows/not-a-uuid",
    ],
)
def test_unknown_ids_are_404(api, path):
    resp = api.http.get(path)
    assert resp.status_code == 404
    body = resp.json()
    assert body["status_code"] == 404 and "not found" in body["error"]
    resp = api.http.put("/api/v1/workflows/00000000-0000-0000-0000-000000000000/cancel")
    assert resp.status_code == 404


def test_list_pages_and_filters_by_status(api):
    ids = [
        api.submit({"name": f"listed {i}", "tasks": [{"name": "n", "type": "noop"}]})["id"]
        for i in range(3)
    ]
    for wf_id in ids:
        api.wait(wf_id)
    body = api.http.get("/api/v1/workflows", params={"limit": 2, "page": 1}).json()
    assert body["limit"] == 2 and body["page"] == 1
    assert len(body["workflows"]) == 2
    assert body["total"] >= 3
    page2 = api.http.get("/api/v1/workflows", params={"limit": 2, "page": 2}).json()
    assert not {w["id"] for w in body["workflows"]} & {w["id"] for w in page2["workflows"]}
    completed = api.http.get(
        "/api/v1/workflows", params={"status": "completed", "limit": 100}
    ).json()
    assert all(w["status"] == "completed" for w in completed["workflows"])
    assert set(ids) <= {w["id"] for w in completed["workflows"]}
    assert api.http.get("/api/v1/workflows", params={"status": "bogus"}).status_code == 422
    assert api.http.get("/api/v1/workflows", params={"limit": 0}).status_code == 422


def test_a_nul_character_in_a_result_fails_its_step_and_blocks_nothing(api):
    # PostgreSQL can store U+0000 neither in text nor in jsonb; a step's output
    # (or error) holding one must not stop the worker recording anything else.
    nul_output = api.submit(
        {
            "name": "nul-out",
            "tasks": [{"name": "t", "type": "generic", "payload": sh("printf 'a\\000b'")}],
        }
    )
    nul_error = api.submit(
        {
            "name": "nul-err",
            "tasks": [
                {"name": "t", "type": "generic", "payload": sh("printf 'x\\000y' >&2; exit 3")}
            ],
        }
    )
    wf = api.wait(nul_output["id"])
    assert wf["status"] == "failed"
    assert "U+0000" in task(wf, "t")["error"]
    wf = api.wait(nul_error["id"])
    assert wf["status"] == "failed"
    error = task(wf, "t")["error"]
    assert error.startswith("exit code 3") and "x\ufffdy" in error, error
    after = api.submit({"name": "after", "tasks": [{"name": "n", "type": "noop"}]})
    assert api.wait(after["id"])["status"] == "completed"


def test_an_http_step_to_the_metadata_address_is_refused_and_not_retried(api):
    wf = api.submit(
        {
            "name": "metadata",
            "tasks": [
                {
                    "name": "steal",
                    "type": "http.request",
                    "payload": {"url": "http://169.254.169.254/latest/meta-data/"},
                    "max_retries": 3,
                }
            ],
        }
    )
    done = api.wait(wf["id"])
    assert done["status"] == "failed"
    steal = task(done, "steal")
    assert steal["retry_count"] == 0
    assert steal["error"].startswith("egress guard: 169.254.169.254 is a link-local address")
