"""The "Common Workflows" shell scripts of specs/workflow-management-api.md,
run with bash, curl and jq against a real server on localhost:8000, with real
A2A agents behind the scripts' agent URLs (http://extractor:8080, ...).

The scripts are the spec's, unchanged, except that the two placeholder ids they
hard-code (a run id in script 2, a workflow id in scripts 3 and 4) are replaced
by real ones, as a reader of the spec would. Names like `extractor` resolve
through /etc/hosts entries this test adds (and removes) to distinct loopback
addresses, so every agent can listen on port 8080 as the scripts say.

Runs alone (`serial`): it needs port 8000 and edits /etc/hosts.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowctl.testing import processes
from flowctl.testing.a2a_agents import EtlExecutor, Fault, start_agent, start_etl_agent
from helpers import IN_CI

pytestmark = pytest.mark.serial

SCRIPTS = Path(__file__).parent / "spec_scripts"
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# flowctl test_spec_scripts"
AGENT_HOSTS = {
    "extractor": "127.0.0.2",
    "transformer": "127.0.0.3",
    "validator": "127.0.0.4",
    "flaky": "127.0.0.5",
}
API = "http://localhost:8000"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def hosts() -> Iterator[None]:
    if not os.access(HOSTS_FILE, os.W_OK):
        _unavailable("/etc/hosts is not writable (the scripts' agent names must resolve)")
    original = HOSTS_FILE.read_text()
    lines = [f"{ip} {name} {HOSTS_MARK}" for name, ip in AGENT_HOSTS.items()]
    HOSTS_FILE.write_text(original.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    try:
        yield
    finally:
        current = HOSTS_FILE.read_text().splitlines()
        HOSTS_FILE.write_text("\n".join(ln for ln in current if HOSTS_MARK not in ln) + "\n")


@pytest.fixture(scope="module")
def agents(hosts) -> Iterator[dict]:
    started = {
        "extractor": start_etl_agent(
            "DataExtractorAgent", host=AGENT_HOSTS["extractor"], port=8080
        ),
        "transformer": start_etl_agent(
            "DataTransformerAgent", host=AGENT_HOSTS["transformer"], port=8080
        ),
        # Slow enough that script 4 finds its run still running after 10 s.
        "validator": start_etl_agent(
            "DataValidatorAgent", host=AGENT_HOSTS["validator"], port=8080, delay=60
        ),
        # Fails its first call, then works: script 2 retries a run it failed.
        "flaky": start_agent(
            "FlakyAgent",
            lambda calls: EtlExecutor("FlakyAgent", calls),
            host=AGENT_HOSTS["flaky"],
            port=8080,
            faults=[Fault.rpc_error(-32603, "flaky agent failure")],
        ),
    }
    yield started
    for agent in started.values():
        agent.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, agents) -> Iterator[httpx.Client]:
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    if not _port_free(8000):
        _unavailable("port 8000 is taken (the scripts talk to localhost:8000)")
    data_dir = tmp_path_factory.mktemp("spec-scripts")
    proc = processes.FlowctlProcess(
        args=[*processes.FLOWCTL, "server", "--port", "8000"],
        env=processes.flowctl_env(data_dir, None, log_level="warning"),
        log_path=data_dir / "server.log",
        port=8000,
    ).start()
    client = httpx.Client(base_url=API, timeout=10)
    try:
        yield client
    finally:
        proc.kill()


STATE: dict[str, str] = {}


def run_script(number: int, replace: dict[str, str] | None = None) -> str:
    text = (SCRIPTS / f"workflow{number}.sh").read_text()
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    result = subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, timeout=100, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_workflow_1_setup_and_execution(server):
    out = run_script(1)
    STATE["workflow_id"] = re.search(r"Created workflow: (\S+)", out).group(1)
    run_id = re.search(r"Started run: (\S+)", out).group(1)
    assert "Run status: COMPLETED" in out, out
    steps = server.get(f"/api/v1/runs/{run_id}/steps").json()
    assert [s["step_id"] for s in steps] == ["extract", "transform"]
    assert steps[0]["input_data"] == {"source": "https://api.example.com/data"}
    assert steps[1]["input_data"] == {"data": {"source": "https://api.example.com/data"}}
    assert all(s["status"] == "COMPLETED" for s in steps)


def test_workflow_2_retry_a_failed_run(server):
    agent = server.post(
        "/api/v1/agents",
        json={"name": "FlakyAgent", "url": "http://flaky:8080", "retry_config": {"max_retries": 0}},
    )
    assert agent.status_code == 201, agent.text
    workflow = server.post(
        "/api/v1/workflows",
        json={
            "name": "flaky-pipeline",
            "start_step": "only",
            "steps": {
                "only": {
                    "id": "only",
                    "agent_name": "FlakyAgent",
                    "next_step": None,
                    "input_mapping": {"x": "${workflow.input.x}"},
                }
            },
        },
    ).json()
    run = server.post(
        f"/api/v1/workflows/{workflow['id']}/execute", json={"input_data": {"x": 1}}
    ).json()
    for _ in range(500):
        if server.get(f"/api/v1/runs/{run['id']}").json()["status"] == "FAILED":
            break
    else:
        pytest.fail("the flaky run never failed")
    out = run_script(
        2, {'RUN_ID="run-789e0123-e89b-12d3-a456-426614174000"': f'RUN_ID="{run["id"]}"'}
    )
    assert run["id"] in out and "flaky agent failure" in out
    assert "Retry status: COMPLETED" in out, out


def test_workflow_3_update_bumps_the_version(server):
    validator = server.post(
        "/api/v1/agents",
        json={"name": "DataValidatorAgent", "url": "http://validator:8080"},
    )
    assert validator.status_code == 201, validator.text
    placeholder = 'WORKFLOW_ID="456e7890-e89b-12d3-a456-426614174000"'
    out = run_script(3, {placeholder: f'WORKFLOW_ID="{STATE["workflow_id"]}"'})
    versions = server.get(f"/api/v1/workflows/{STATE['workflow_id']}/versions").json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    assert '"version": 2' in out


def test_workflow_4_cancel_a_long_run(server, agents):
    placeholder = 'WORKFLOW_ID="456e7890-e89b-12d3-a456-426614174000"'
    out = run_script(4, {placeholder: f'WORKFLOW_ID="{STATE["workflow_id"]}"'})
    assert "Current status: RUNNING" in out, out
    assert '"status": "CANCELLED"' in out
    assert '"error_message": "Cancelled: Dataset too large, need to optimize first"' in out
    assert agents["validator"].calls.cancels, "the slow agent never saw the cancel"


def test_workflow_5_health_of_every_agent(server):
    out = run_script(5)
    for name in ("DataExtractorAgent", "DataTransformerAgent", "DataValidatorAgent"):
        assert re.search(rf"✓ {name} is healthy \(\d+(\.\d+)?ms\)", out), out
    assert "unhealthy" not in out
