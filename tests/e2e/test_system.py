"""Health, readiness, metrics, and the command line."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

from flowctl import __version__
from flowctl.testing import processes
from helpers import Api

FLOWCTL = [sys.executable, "-m", "flowctl.cli.main"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" (\S+)"
    )
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    assert found, f"{name}{labels} not in metrics"
    return float(found.group(1))


def test_health_endpoints(api):
    health = api.http.get("/health").json()
    assert health["status"] == "healthy"
    assert health["version"] == __version__
    assert health["uptime_seconds"] >= 0
    v1 = api.http.get("/api/v1/health")
    assert v1.status_code == 200 and v1.json()["status"] == "healthy"
    ready = api.http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "healthy"
    assert checks["database"]["response_time_ms"] >= 0
    assert checks["workers"]["status"] == "healthy"


def test_metrics_count_runs_steps_and_requests(api):
    wf = api.submit(
        {
            "name": "measured",
            "tasks": [
                {"name": "a", "type": "noop"},
                {"name": "b", "type": "noop", "dependencies": ["a"]},
            ],
        }
    )
    api.wait(wf["id"])
    text = api.http.get("/metrics").text
    assert metric(text, "flowctl_runs", status="completed") >= 1
    assert metric(text, "flowctl_steps", status="completed") >= 2
    assert metric(text, "flowctl_queue_depth") >= 0
    assert metric(text, "flowctl_step_duration_seconds_count") >= 2
    assert metric(text, "api_info", version=__version__) == 1
    assert metric(text, "api_uptime_seconds") > 0
    posted = metric(
        text, "api_requests_total", method="POST", route="/api/v1/workflows", status="201"
    )
    assert posted >= 1
    counts = api.http.get("/api/v1/metrics").json()
    assert counts["workflows"]["completed"] >= 1
    assert counts["tasks"]["completed"] >= 2
    assert counts["workers"]["active"] + counts["workers"]["idle"] >= 1


def test_readiness_fails_without_workers(sqlite_procs):
    server = sqlite_procs.server("--no-worker")
    resp = httpx.get(f"{server.url}/health/ready")
    assert resp.status_code == 503
    assert resp.json()["checks"]["workers"]["status"] == "unhealthy"
    # Still accepts work: it waits for a worker.
    wf = Api(server.url).submit({"name": "queued", "tasks": [{"name": "n", "type": "noop"}]})
    assert Api(server.url).workflow(wf["id"])["status"] == "pending"


def test_second_server_on_the_same_sqlite_file_is_refused(sqlite_procs):
    sqlite_procs.server()
    second = processes.server(sqlite_procs.data_dir, None)
    second_proc = subprocess.run(
        second.args, env=second.env, capture_output=True, text=True, timeout=30
    )
    assert second_proc.returncode == 1
    assert "in use by another flowctl process" in second_proc.stderr
    assert "Traceback" not in second_proc.stderr


def test_cli_refuses_a_public_bind_without_auth(tmp_path):
    env = processes.flowctl_env(tmp_path)
    out = subprocess.run(
        [*FLOWCTL, "server", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "--insecure-no-auth" in out.stderr


def test_a_bad_secret_key_stops_server_and_worker_with_a_one_line_error(tmp_path):
    env = {**processes.flowctl_env(tmp_path), "FLOWCTL_SECRET_KEY": "not-a-fernet-key"}
    for command in (["server", "--port", "1"], ["worker"]):
        out = subprocess.run(
            [*FLOWCTL, *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2, out.stderr
        assert "error: FLOWCTL_SECRET_KEY: the key is not a Fernet key" in out.stderr
        assert "Traceback" not in out.stderr


def test_cli_migrate_and_version(tmp_path):
    env = processes.flowctl_env(tmp_path / "d")
    out = subprocess.run([*FLOWCTL, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "flowctl.db").exists()
    out = subprocess.run([*FLOWCTL, "version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == __version__
