"""The runs surface (`/api/v1/runs`) over runs started through the FlowCtl
API: every run is listed there, in the agent-workflow shape."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import sh, task


def run_of(api, run_id: str) -> dict:
    resp = api.http.get(f"/api/v1/runs/{run_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_run(api, run_id: str, statuses: set[str], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = run_of(api, run_id)
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.02)


def test_run_shape_and_steps_in_start_order(api):
    wf = api.submit(
        {
            "name": "shape",
            "tasks": [
                {"name": "first", "type": "noop", "payload": {"n": 1}},
                {
                    "name": "second",
                    "type": "noop",
                    "dependencies": ["first"],
                    "payload": {"got": "${first.output.n}"},
                },
            ],
        }
    )
    run = wait_run(api, wf["id"], {"COMPLETED"})
    assert run["run_id"] == run["id"] == wf["id"]
    assert run["workflow_name"] == "shape"
    assert run["completed_at"] and run["cancelled_at"] is None and run["error_message"] is None
    steps = api.http.get(f"/api/v1/runs/{wf['id']}/steps").json()
    assert [s["step_id"] for s in steps] == ["first", "second"]
    assert steps[1]["input_data"] == {"got": 1}  # resolved, type kept
    assert steps[1]["output_data"] == {"got": 1}
    assert all(s["status"] == "COMPLETED" for s in steps)


def test_retry_resumes_without_rerunning_completed_steps(api, tmp_path: Path):
    ran = tmp_path / "ran.log"
    gate = tmp_path / "gate"
    wf = api.submit(
        {
            "name": "resumable",
            "tasks": [
                {"name": "a", "type": "generic", "payload": sh(f"echo a >> {ran}")},
                {
                    "name": "b",
                    "type": "generic",
                    "max_retries": 0,
                    "dependencies": ["a"],
                    "payload": sh(f"echo b >> {ran}; test -f {gate}"),
                },
                {
                    "name": "c",
                    "type": "generic",
                    "dependencies": ["b"],
                    "payload": sh(f"echo c >> {ran}"),
                },
            ],
        }
    )
    failed = wait_run(api, wf["id"], {"FAILED"})
    assert failed["error_message"].startswith("Step 'b' failed: exit code 1")
    # Not retryable while it is not failed or cancelled is checked below; now fix and retry.
    gate.touch()
    resp = api.http.post(f"/api/v1/runs/{wf['id']}/retry", json={})
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "PENDING"
    assert resp.json()["error_message"] is None
    done = wait_run(api, wf["id"], {"COMPLETED"})
    assert done["completed_at"]
    assert ran.read_text().split() == ["a", "b", "b", "c"]  # a ran once
    again = api.http.post(f"/api/v1/runs/{wf['id']}/retry")
    assert again.status_code == 400
    assert "only failed or cancelled" in again.json()["error"]


def test_cancel_with_a_reason(api):
    wf = api.submit(
        {"name": "long", "tasks": [{"name": "s", "type": "sleep", "payload": {"seconds": 60}}]}
    )
    api.wait_task(wf["id"], "s", "running")
    started = time.monotonic()
    resp = api.http.post(
        f"/api/v1/runs/{wf['id']}/cancel", json={"reason": "Incorrect input data provided"}
    )
    assert resp.status_code == 200, resp.text
    run = resp.json()
    assert run["status"] == "CANCELLED"
    assert run["error_message"] == "Cancelled: Incorrect input data provided"
    assert run["cancelled_by"] == "system" and run["cancelled_at"]
    assert run["completed_at"] is None
    api.wait(wf["id"], lambda wf: task(wf, "s")["status"] == "cancelled", timeout=2)
    assert time.monotonic() - started < 1.5
    assert api.http.post(f"/api/v1/runs/{wf['id']}/cancel").status_code == 400
    # A cancelled run can be retried.
    assert api.http.post(f"/api/v1/runs/{wf['id']}/retry").status_code == 202
    api.http.post(f"/api/v1/runs/{wf['id']}/cancel")


def test_logs_are_the_runs_events(api):
    wf = api.submit({"name": "logged", "tasks": [{"name": "n", "type": "noop"}]})
    wait_run(api, wf["id"], {"COMPLETED"})
    body = api.http.get(f"/api/v1/runs/{wf['id']}/logs").json()
    types = [e["type"] for e in body["items"]]
    assert types[0] == "run.created" and "step.completed" in types and types[-1] == "run.completed"
    assert body["run_id"] == wf["id"] and body["total"] == len(types)
    assert api.http.get("/api/v1/runs/nope/logs").status_code == 404


def test_list_filters_and_sorts(api):
    before = time.time()
    ok = api.submit({"name": "ok", "tasks": [{"name": "n", "type": "noop"}]})
    bad = api.submit(
        {
            "name": "bad",
            "tasks": [{"name": "f", "type": "generic", "max_retries": 0, "payload": sh("exit 1")}],
        }
    )
    wait_run(api, ok["id"], {"COMPLETED"})
    wait_run(api, bad["id"], {"FAILED"})
    after = time.time()

    def ids(**params) -> list[str]:
        resp = api.http.get("/api/v1/runs", params={"page_size": 100, **params})
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["items"]]

    failed = ids(status="FAILED")
    assert bad["id"] in failed and ok["id"] not in failed
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"  # noqa: E731
    window = ids(created_after=iso(before - 0.001), created_before=iso(after))
    assert set(window) >= {ok["id"], bad["id"]}
    assert ok["id"] not in ids(created_after=iso(after))
    assert ids(workflow_id=ok["id"]) == [ok["id"]]
    assert ids(workflow_definition_id=bad["id"]) == [bad["id"]]
    newest_first = ids(created_after=iso(before - 0.001))
    assert newest_first.index(bad["id"]) < newest_first.index(ok["id"])
    oldest_first = ids(created_after=iso(before - 0.001), sort_order="asc")
    assert oldest_first.index(ok["id"]) < oldest_first.index(bad["id"])
    by_status = ids(created_after=iso(before - 0.001), sort_by="status", sort_order="asc")
    assert by_status.index(ok["id"]) < by_status.index(bad["id"])  # completed < failed
    page = api.http.get("/api/v1/runs", params={"page_size": 1, "page": 1}).json()
    assert (
        page["page_size"] == 1 and page["total_pages"] == page["total"] and len(page["items"]) == 1
    )


@pytest.mark.parametrize(
    "params",
    [
        {"status": "completed"},
        {"sort_by": "name"},
        {"sort_order": "up"},
        {"page_size": 101},
        {"created_after": "yesterday"},
    ],
)
def test_bad_list_parameters_are_422(api, params):
    resp = api.http.get("/api/v1/runs", params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"]


def test_unknown_run_is_404(api):
    for method, path in [
        ("GET", "/api/v1/runs/missing"),
        ("GET", "/api/v1/runs/missing/steps"),
        ("POST", "/api/v1/runs/missing/retry"),
        ("POST", "/api/v1/runs/missing/cancel"),
    ]:
        resp = api.http.request(method, path)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["error"] == "Run 'missing' not found"
