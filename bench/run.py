"""flowctl benchmark: start a real `flowctl server`, drive it over HTTP, report.

    .venv/bin/python bench/run.py [--db sqlite|postgres|both] [--only W1,W3]
                                  [--json PATH] [--pg-url URL] [--profile]

Workloads (every figure is computed from the server's own timestamps, against
the client's wall clock taken just before the POST; both are UTC epoch seconds
on the same machine):

  W1 fanout-1000   one workflow of 1,000 independent noop tasks
  W2 chain-200     200 noop tasks in a strict chain
  W3 runs-200x10   200 diamond workflows (1 -> 8 -> 1 noop), submitted concurrently
  W4 sleep-100     100 independent `sleep 1s` tasks, max_concurrency 50 (ideal 2.0 s)
  W5 agent-chain   100 runs of a 3-step agent workflow (a -> b -> c) against a real
                   A2A echo agent (bench/agents.py, its own process): the server's
                   added latency per agent step and the hop between steps

plus a floor (bare one-row UPDATE commits/s on the same database engine) and the
server's RSS. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from flowctl import __version__ as flowctl_version
from flowctl.testing.processes import (
    FlowctlProcess,
    create_database,
    drop_database,
    postgres_reachable,
    server,
)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
API = "/api/v1"
EMPTY_PAGE = 1_000_000  # the largest page the API accepts: past the end, only `total`
POLL_INTERVAL = 0.02  # seconds between status polls
# W1-W3 raise the per-workflow cap (default 10) so it is not what gets measured.
MAX_CONCURRENCY = 1000
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
DB_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

# Wide enough for both databases side by side when piped to a file or CI log.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)


class BenchFailure(Exception):
    """A workload did not finish as `completed`: the benchmark itself failed."""


def epoch(value: str) -> float:
    """The server's ISO-8601 UTC timestamp ("...Z") as epoch seconds."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --- workflow bodies ---------------------------------------------------------------


def task(name: str, type_: str = "noop", deps: list[str] | None = None, **payload: Any) -> dict:
    return {"name": name, "type": type_, "payload": payload, "dependencies": deps or []}


def workflow(name: str, tasks: list[dict], max_concurrency: int = MAX_CONCURRENCY) -> dict:
    # `timeout` is given explicitly: the spec's default is "1h" either way.
    config = {"max_concurrency": max_concurrency, "timeout": "1h"}
    return {"name": name, "config": config, "tasks": tasks}


def fanout_body(n: int) -> dict:
    return workflow(f"fanout-{n}", [task(f"t{i}") for i in range(n)])


def chain_body(n: int) -> dict:
    tasks = [task(f"t{i}", deps=[f"t{i - 1}"] if i else None) for i in range(n)]
    return workflow(f"chain-{n}", tasks)


def diamond_body(index: int, width: int = 8) -> dict:
    middle = [task(f"m{i}", deps=["start"]) for i in range(width)]
    end = task("end", deps=[t["name"] for t in middle])
    return workflow(f"diamond-{index}", [task("start"), *middle, end])


def sleep_body(n: int, seconds: float, max_concurrency: int) -> dict:
    tasks = [task(f"s{i}", "sleep", seconds=seconds) for i in range(n)]
    return workflow(f"sleep-{n}", tasks, max_concurrency=max_concurrency)


# --- talking to the server -----------------------------------------------------------


@dataclass
class Server:
    """The running flowctl process and a keep-alive HTTP client to it."""

    proc: FlowctlProcess
    http: httpx.Client
    poll_interval: float = POLL_INTERVAL
    rss_peak: int = 0
    agent: BenchAgent | None = None  # W5's echo agent, when W5 runs
    agent_error: str = "W5 was not asked for"  # why `agent` is None

    def rss(self) -> int:
        rss = psutil.Process(self.proc.pid).memory_info().rss
        self.rss_peak = max(self.rss_peak, rss)
        return rss

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def submit(self, body: dict) -> tuple[str, float, float]:
        """POST a workflow: its id, the client's wall time just before, the round trip."""
        submitted = time.time()
        response = self.http.post(f"{API}/workflows", json=body)
        round_trip = time.time() - submitted
        if response.status_code != 201:
            raise BenchFailure(f"POST {body['name']} -> {response.status_code}: {response.text}")
        return response.json()["id"], submitted, round_trip

    def get(self, workflow_id: str) -> dict:
        response = self.http.get(f"{API}/workflows/{workflow_id}")
        response.raise_for_status()
        return response.json()

    def count(self, status: str) -> int:
        """How many workflows have this status, server-wide.

        The poll must not load the engine it measures: GET of a 1,000-task
        workflow costs the server ~25 ms, and /api/v1/metrics counts every row
        ever written (it grows with history). A list request for a page far past
        the end returns no rows, only `total`: an indexed count of one status.
        """
        params = {"status": status, "limit": 1, "page": EMPTY_PAGE}
        response = self.http.get(f"{API}/workflows", params=params)
        response.raise_for_status()
        return response.json()["total"]

    def wait_until_idle(self, timeout: float) -> None:
        """Poll until no workflow is pending or running (each workload runs alone).

        One request per poll: runs only move pending -> running -> ended and
        nothing new is submitted meanwhile, so once none is pending, none will
        be, and only `running` needs watching.
        """
        deadline = time.monotonic() + timeout
        for status in ("pending", "running"):
            while self.count(status):
                self.rss()
                if time.monotonic() > deadline:
                    raise BenchFailure(f"workflows still {status} after {timeout:.0f}s")
                time.sleep(self.poll_interval)

    def poll_cost_ms(self, polls: int = 100) -> float:
        """Server CPU one status poll costs (psutil's CPU clock ticks in 10 ms)."""
        before = self.cpu_seconds()
        for _ in range(polls):
            self.count("running")
        return (self.cpu_seconds() - before) / polls * 1000

    def cancel_active(self) -> None:
        """After a failure: cancel what is left, so the next workload starts idle."""
        for status in ("pending", "running"):
            response = self.http.get(f"{API}/workflows", params={"status": status, "limit": 100})
            for run in response.json().get("workflows", []):
                self.http.put(f"{API}/workflows/{run['id']}/cancel")
        for status in ("PENDING", "RUNNING"):  # agent runs (W5)
            response = self.http.get(f"{API}/runs", params={"status": status, "page_size": 100})
            for run in response.json().get("items", []):
                self.http.post(f"{API}/runs/{run['id']}/cancel", json={})

    def finished(self, workflow_id: str) -> dict:
        """The ended workflow; a status other than completed fails the benchmark."""
        run = self.get(workflow_id)
        if run["status"] != "completed":
            failed = [t for t in run["tasks"] if t["status"] != "completed"][:3]
            detail = "; ".join(f"{t['name']}={t['status']}: {t['error']}" for t in failed)
            raise BenchFailure(
                f"workflow {run['name']} ({workflow_id}) ended {run['status']}: "
                f"{run.get('error')} {detail}"
            )
        return run

    def run_one(self, body: dict, timeout: float) -> tuple[dict, float, float]:
        """Submit one workflow and wait for it: the run, submit time, POST round trip."""
        workflow_id, submitted, round_trip = self.submit(body)
        self.wait_until_idle(timeout)
        return self.finished(workflow_id), submitted, round_trip


# --- workloads --------------------------------------------------------------------------


def run_w1(srv: Server) -> dict:
    """fanout-1000: task throughput when everything is ready at once."""
    n = 1000
    run, submitted, round_trip = srv.run_one(fanout_body(n), timeout=300)
    done, started = epoch(run["completed_at"]), epoch(run["started_at"])
    return {
        "tasks": n,
        "max_concurrency": MAX_CONCURRENCY,
        "seconds": done - submitted,
        "tasks_per_s": n / (done - submitted),
        "engine_seconds": done - started,
        "engine_tasks_per_s": n / (done - started),
        "post_ms": round_trip * 1000,  # the 201 is sent after a read-back of all 1,000
        "created_ms": (epoch(run["created_at"]) - submitted) * 1000,
        "queued_ms": (started - submitted) * 1000,  # until the first task was claimed
    }


def run_w2(srv: Server) -> dict:
    """chain-200: the latency of one hop (a task completes, its successor starts)."""
    n = 200
    run, submitted, _ = srv.run_one(chain_body(n), timeout=300)
    tasks = sorted(run["tasks"], key=lambda t: epoch(t["started_at"]))
    first_start, last_done = epoch(tasks[0]["started_at"]), epoch(tasks[-1]["completed_at"])
    hops = [epoch(b["started_at"]) - epoch(a["completed_at"]) for a, b in pairwise(tasks)]
    run_span = epoch(run["completed_at"]) - epoch(run["started_at"])
    return {
        "tasks": n,
        "max_concurrency": MAX_CONCURRENCY,
        "seconds": epoch(run["completed_at"]) - submitted,
        "ms_per_hop": (last_done - first_start) / (n - 1) * 1000,
        "ms_per_hop_run": run_span / n * 1000,
        "gap_ms_p50": statistics.median(hops) * 1000,
        "gap_ms_max": max(hops) * 1000,
    }


def run_w3(srv: Server, parallel: int = 32) -> dict:
    """runs-200x10: many small workflows at once (submission and scheduling)."""
    n = 200
    submitted = asyncio.run(_submit_concurrently(srv.proc.url, n, parallel))
    srv.wait_until_idle(timeout=300)
    runs = asyncio.run(_fetch_all(srv.proc.url, list(submitted), parallel))
    latencies, last_done = [], 0.0
    for run in runs:
        if run["status"] != "completed":
            srv.finished(run["id"])  # raises with the details
        done = epoch(run["completed_at"])
        last_done = max(last_done, done)
        latencies.append(done - submitted[run["id"]])
    first_submit, last_submit = min(submitted.values()), max(submitted.values())
    pct = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "workflows": n,
        "tasks_each": 10,
        "parallel_posts": parallel,
        "submit_span_s": last_submit - first_submit,
        "seconds": last_done - first_submit,
        "workflows_per_s": n / (last_done - first_submit),
        "tasks_per_s": n * 10 / (last_done - first_submit),
        "latency_ms_p50": pct[49] * 1000,
        "latency_ms_p95": pct[94] * 1000,
        "latency_ms_max": max(latencies) * 1000,
    }


async def _submit_concurrently(url: str, n: int, parallel: int) -> dict[str, float]:
    """POST n diamonds from `parallel` connections; id -> client submit time."""

    async def post(client: httpx.AsyncClient, i: int) -> tuple[str, float]:
        body = diamond_body(i)
        submitted = time.time()
        response = await client.post(f"{API}/workflows", json=body)
        if response.status_code != 201:
            raise BenchFailure(f"POST diamond-{i} -> {response.status_code}: {response.text}")
        return response.json()["id"], submitted

    return dict(await _fan_out(url, post, range(n), parallel))


async def _fetch_all(url: str, ids: list[str], parallel: int) -> list[dict]:
    async def get(client: httpx.AsyncClient, workflow_id: str) -> dict:
        response = await client.get(f"{API}/workflows/{workflow_id}")
        response.raise_for_status()
        return response.json()

    return await _fan_out(url, get, ids, parallel)


async def _fan_out(url: str, call: Callable, items: Iterable, parallel: int) -> list:
    """`call(client, item)` for every item, `parallel` at a time, in item order.

    One client (one keep-alive connection) per lane: a single shared
    httpx.AsyncClient with 32 busy connections spends more CPU in its pool
    bookkeeping than in the requests, and this client shares the machine.
    """
    pending = list(enumerate(items))
    results: list = [None] * len(pending)
    queue = iter(pending)
    tls = ssl.create_default_context()  # plain HTTP, but each client would build one (~25 ms)

    async def lane() -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, verify=tls) as client:
            for index, item in queue:
                results[index] = await call(client, item)

    await asyncio.gather(*(lane() for _ in range(parallel)))
    return results


def run_w4(srv: Server) -> dict:
    """sleep-100: 100 x 1 s with max_concurrency 50 -> two waves, ideally 2.0 s."""
    n, seconds, cap = 100, 1.0, 50
    run, submitted, _ = srv.run_one(sleep_body(n, seconds, cap), timeout=120)
    starts = sorted(epoch(t["started_at"]) for t in run["tasks"])
    return {
        "tasks": n,
        "sleep_s": seconds,
        "max_concurrency": cap,
        "wall_s": epoch(run["completed_at"]) - submitted,
        "ideal_s": n / cap * seconds,
        "first_wave_spread_ms": (starts[cap - 1] - starts[0]) * 1000,
    }


# --- W5: agent steps against a real A2A agent ----------------------------------------------

AGENTS_SCRIPT = BENCH_DIR / "agents.py"
W5_STEPS = ("a", "b", "c")


@dataclass
class BenchAgent:
    """bench/agents.py: the a2a-sdk echo agent in its own process, timing each call."""

    proc: subprocess.Popen
    url: str
    log_path: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, wait: float = 30.0) -> Iterator[BenchAgent]:
        log_path = Path(tempfile.mkstemp(prefix="flowctl-bench-agent-", suffix=".log")[1])
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(AGENTS_SCRIPT), "--port", "0", "--name", "bench-echo"],
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        try:
            agent = cls(proc, cls._listening_url(proc, log_path, wait), log_path)
            agent.wait_healthy(wait)
            yield agent
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
            log_path.unlink(missing_ok=True)

    @staticmethod
    def _listening_url(proc: subprocess.Popen, log_path: Path, wait: float) -> str:
        """The URL from the agent's `listening <url>` line."""
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], wait)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("listening "):
            proc.kill()
            raise BenchFailure(
                f"bench agent did not start: {line!r}; log: {log_path.read_text()[-2000:]}"
            )
        return line.split(" ", 1)[1]

    def wait_healthy(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BenchFailure(f"bench agent at {self.url} never answered /health")
            time.sleep(0.05)

    def stats(self) -> dict[str, dict]:
        """Context id -> the agent's record of that SendMessage call."""
        response = httpx.get(f"{self.url}/stats", timeout=30)
        response.raise_for_status()
        return {
            r["context_id"]: r
            for r in response.json()
            if r["method"] in ("SendMessage", "message/send") and r["context_id"]
        }

    def reset_stats(self) -> None:
        httpx.post(f"{self.url}/stats/reset", timeout=30).raise_for_status()

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


def agent_chain_body(name: str, agent_name: str) -> dict:
    """a -> b -> c on one agent; each step passes the workflow input on with the
    previous step's output (the echo agent returns its input plus {"agent": name})."""
    mappings = {
        "a": {"n": "${workflow.input.n}", "tag": "${workflow.input.tag}"},
        "b": {"n": "${a.output.n}", "tag": "${workflow.input.tag}", "prev": "${a.output.agent}"},
        "c": {"n": "${b.output.n}", "tag": "${b.output.tag}", "prev": "${b.output.agent}"},
    }
    nexts = dict(pairwise((*W5_STEPS, None)))
    steps = {
        sid: {"id": sid, "agent_name": agent_name, "next_step": nexts[sid], "input_mapping": m}
        for sid, m in mappings.items()
    }
    return {"name": name, "start_step": W5_STEPS[0], "steps": steps}


def _post_created(srv: Server, path: str, body: dict) -> dict:
    response = srv.http.post(f"{API}/{path}", json=body)
    if response.status_code != 201:
        raise BenchFailure(
            f"POST /{path} {body['name']} -> {response.status_code}: {response.text}"
        )
    return response.json()


def _runs_with_status(srv: Server, status: str) -> int:
    params = {"status": status, "page_size": 1, "page": EMPTY_PAGE}
    response = srv.http.get(f"{API}/runs", params=params)
    response.raise_for_status()
    return response.json()["total"]


def _wait_runs_idle(srv: Server, timeout: float) -> None:
    """As Server.wait_until_idle, over the agent-run surface (/api/v1/runs)."""
    deadline = time.monotonic() + timeout
    for status in ("PENDING", "RUNNING"):
        while _runs_with_status(srv, status):
            srv.rss()
            if time.monotonic() > deadline:
                raise BenchFailure(f"agent runs still {status} after {timeout:.0f}s")
            time.sleep(srv.poll_interval)


def run_w5(srv: Server, n: int = 100, parallel: int = 8, paced: int = 30) -> dict:
    """agent-chain: a -> b -> c on a real A2A echo agent.

    Two phases on one definition. Paced: `paced` runs, one every W5_PACE_S (a
    run takes a few ms, so one at a time): the server's added latency per step
    without queueing; the target applies here. Load: `n` runs POSTed `parallel`
    at a time (all in flight at once): runs/s, and the same latencies under load.
    """
    if srv.agent is None:
        raise BenchFailure(f"no bench agent (bench/agents.py): {srv.agent_error}")
    suffix = uuid.uuid4().hex[:8]
    agent_name = f"bench-echo-{suffix}"
    _post_created(srv, "agents", {"name": agent_name, "url": srv.agent.url})
    definition = _post_created(srv, "workflows", agent_chain_body(f"chain-{suffix}", agent_name))
    url, definition_id, tag = srv.proc.url, definition["id"], f"w5-{suffix}"
    # One run first: the server reads the agent card once per URL (and caches it).
    warm = asyncio.run(_execute_runs(url, definition_id, [-1], tag, 1))
    _wait_runs_idle(srv, timeout=60)
    _fetch_runs(srv, list(warm), 1)

    srv.agent.reset_stats()
    submitted = asyncio.run(_execute_runs(url, definition_id, range(paced), tag, 1, W5_PACE_S))
    _wait_runs_idle(srv, timeout=60)
    quiet = _step_timings(_fetch_runs(srv, list(submitted), parallel), srv.agent.stats())

    srv.agent.reset_stats()
    agent_cpu = srv.agent.cpu_seconds()
    submitted = asyncio.run(_execute_runs(url, definition_id, range(n), tag, parallel))
    _wait_runs_idle(srv, timeout=300)
    agent_cpu = srv.agent.cpu_seconds() - agent_cpu
    runs = _fetch_runs(srv, list(submitted), parallel)
    load = _step_timings(runs, srv.agent.stats())

    first_submit = min(submitted.values())
    last_done = max(epoch(run["completed_at"]) for run, _ in runs)
    latencies = [epoch(run["completed_at"]) - submitted[run["id"]] for run, _ in runs]
    figures = {
        "runs": n,
        "steps_each": len(W5_STEPS),
        "parallel_posts": parallel,
        "paced_runs": paced,
        "pace_s": W5_PACE_S,
        "seconds": last_done - first_submit,
        "runs_per_s": n / (last_done - first_submit),
        "run_latency_ms_p50": _pct(latencies, 50) * 1000,
        "run_latency_ms_p95": _pct(latencies, 95) * 1000,
        "agent_cpu_s": agent_cpu,
    }
    for phase, timings in (("paced", quiet), ("load", load)):
        for key, values in timings.items():
            figures[f"{phase}_{key}_p50"] = _pct(values, 50)
            figures[f"{phase}_{key}_p95"] = _pct(values, 95)
    return figures


W5_PACE_S = 0.1  # seconds between the paced phase's runs


def _step_timings(runs: list[tuple[dict, list[dict]]], calls: dict[str, dict]) -> dict:
    """Per agent step, in ms: `added` (step completed_at - started_at, minus the
    agent's own time for the call), split into `before` (started_at -> the agent
    got the request) and `after` (the agent sent its answer -> completed_at);
    `agent` (its own time); and per pair of steps `hop` (completed_at -> the next
    step's started_at)."""
    timings: dict[str, list[float]] = {k: [] for k in ("added", "before", "after", "agent", "hop")}
    for run, steps in runs:
        steps = sorted(steps, key=lambda s: epoch(s["started_at"]))
        for step in steps:
            started, completed = epoch(step["started_at"]), epoch(step["completed_at"])
            # The executor's A2A context id: StepContext.idempotency_key.
            context_id = f"flowctl-{run['id']}-{step['id']}"
            call = calls.get(context_id)
            if call is None:
                raise BenchFailure(
                    f"the agent saw no call with context id {context_id} "
                    f"(step {step['step_id']}); it saw e.g. {sorted(calls)[:2]}"
                )
            timings["agent"].append(call["ms"])
            timings["added"].append((completed - started) * 1000 - call["ms"])
            timings["before"].append((call["received"] - started) * 1000)
            timings["after"].append((completed - call["sent"]) * 1000)
        timings["hop"] += [
            (epoch(b["started_at"]) - epoch(a["completed_at"])) * 1000 for a, b in pairwise(steps)
        ]
    return timings


def _pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def _execute_runs(
    url: str,
    definition_id: str,
    numbers: Iterable[int],
    tag: str,
    parallel: int,
    pace: float = 0.0,
) -> dict[str, float]:
    """POST .../execute once per number, `pace` seconds apart per lane;
    run id -> client submit time."""

    async def execute(client: httpx.AsyncClient, i: int) -> tuple[str, float]:
        await asyncio.sleep(pace)
        submitted = time.time()
        body = {"input_data": {"n": i, "tag": tag}}
        response = await client.post(f"{API}/workflows/{definition_id}/execute", json=body)
        if response.status_code != 202:
            raise BenchFailure(f"execute run {i} -> {response.status_code}: {response.text}")
        return response.json()["id"], submitted

    return dict(await _fan_out(url, execute, numbers, parallel))


def _fetch_runs(srv: Server, ids: list[str], parallel: int) -> list[tuple[dict, list[dict]]]:
    """Each run and its steps; a run not COMPLETED, or one whose data did not flow
    a -> b -> c, fails the benchmark."""

    async def get(client: httpx.AsyncClient, run_id: str) -> tuple[dict, list[dict]]:
        run = await client.get(f"{API}/runs/{run_id}")
        steps = await client.get(f"{API}/runs/{run_id}/steps")
        run.raise_for_status()
        steps.raise_for_status()
        return run.json(), steps.json()

    runs = asyncio.run(_fan_out(srv.proc.url, get, ids, parallel))
    for run, steps in runs:
        by_id = {s["step_id"]: s for s in steps}
        if run["status"] != "COMPLETED" or set(by_id) != set(W5_STEPS):
            detail = "; ".join(f"{s['step_id']}={s['status']}: {s['error_message']}" for s in steps)
            raise BenchFailure(
                f"agent run {run['id']} ended {run['status']}: {run['error_message']} | {detail}"
            )
        n = run["input_data"]["n"]
        out = by_id["c"]["output_data"] or {}
        if out.get("n") != n or out.get("prev") != "bench-echo":
            raise BenchFailure(f"run {run['id']}: step c output {out} does not carry n={n}")
    return runs


RUNNERS: dict[str, Callable[[Server], dict]] = {
    "W1": run_w1,
    "W2": run_w2,
    "W3": run_w3,
    "W4": run_w4,
    "W5": run_w5,
}


# --- the floor: bare commits per second ---------------------------------------------------


def sqlite_floor(seconds: float = 2.0) -> dict:
    """One-row UPDATE, each in its own transaction, WAL + synchronous=NORMAL (as flowctl)."""
    with tempfile.TemporaryDirectory(prefix="flowctl-floor-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.execute("INSERT INTO counter VALUES (1, 0)")
        commits, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            conn.execute("COMMIT")
            commits += 1
        elapsed = time.perf_counter() - start
        conn.close()
    return {"commits": commits, "commits_per_s": commits / elapsed}


def postgres_floor(pg_url: str, seconds: float = 2.0) -> dict:
    """One-row UPDATE in autocommit (one round trip, one commit), sequential, asyncpg."""
    import asyncpg
    from sqlalchemy.engine import make_url

    scratch = create_database(pg_url)
    dsn = make_url(scratch).set(drivername="postgresql").render_as_string(hide_password=False)

    async def measure() -> dict:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)")
            await conn.execute("INSERT INTO counter VALUES (1, 0)")
            commits, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                commits += 1
            elapsed = time.perf_counter() - start
            return {
                "commits": commits,
                "commits_per_s": commits / elapsed,
                "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
            }
        finally:
            await conn.close()

    try:
        return asyncio.run(measure())
    finally:
        drop_database(scratch)


def postgres_version(pg_url: str) -> str | None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(pg_url).set(drivername="postgresql", database="postgres")

    async def ask() -> str:
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=5)
        try:
            return await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except Exception:
        return None


# --- one database: server lifecycle ---------------------------------------------------------


@dataclass
class DbResult:
    db: str
    settings: dict[str, Any]
    floor: dict[str, Any] = field(default_factory=dict)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss_mb: float | None = None
    rss_peak_mb: float | None = None
    poll_cost_ms: float | None = None
    failures: list[str] = field(default_factory=list)
    attempted: list[str] = field(default_factory=list)
    skipped: str | None = None
    profile: str | None = None


@contextlib.contextmanager
def flowctl_server(
    db: str, pg_url: str, settings: dict[str, Any], keep_dir: bool
) -> Iterator[FlowctlProcess]:
    """A fresh server: a new temp data dir, and for PostgreSQL a new scratch database."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"flowctl-bench-{db}-"))
    database_url = create_database(pg_url) if db == "postgres" else None
    proc = server(data_dir, database_url, **settings)
    try:
        proc.start(wait=60)
        yield proc
    finally:
        proc.stop()
        if database_url:
            with contextlib.suppress(Exception):
                drop_database(database_url)
        if keep_dir:
            console.print(f"[dim]{DB_LABELS[db]} data dir kept: {data_dir}[/dim]")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def py_spy(pid: int, out: Path, fmt: str) -> Iterator[Path | None]:
    """`py-spy record` attached to the running server for the duration of the block
    (attaching by pid keeps the server's pid, hence its RSS and CPU figures, its own)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        console.print("[yellow]--profile: py-spy not found (pip install py-spy); skipped[/yellow]")
        yield None
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [exe, "record", "--pid", str(pid), "--rate", "200", "--threads", "--nonblocking"]
    spy = subprocess.Popen(
        [*args, "--format", fmt, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # let it attach before the workloads start
    try:
        yield out
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes the profile on SIGINT
        try:
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not out.exists():
            console.print(f"[yellow]py-spy wrote no profile: {err.decode()[-500:]}[/yellow]")


def warm_up(srv: Server) -> None:
    body = workflow("warm-up", [task("a"), task("b", deps=["a"]), task("c", deps=["a"])])
    srv.run_one(body, timeout=60)


def bench_database(db: str, args: argparse.Namespace) -> DbResult:
    settings: dict[str, Any] = {"log_level": "warning"}
    if args.workers:
        settings["worker_concurrency"] = args.workers
    result = DbResult(db=db, settings=settings)
    if db == "postgres" and not postgres_reachable(args.pg_url):
        result.skipped = f"PostgreSQL not reachable at {args.pg_url}"
        console.print(f"[yellow]skipping PostgreSQL: {result.skipped}[/yellow]")
        return result

    console.rule(f"[bold]{DB_LABELS[db]}")
    try:
        result.floor = sqlite_floor() if db == "sqlite" else postgres_floor(args.pg_url)
        console.print(f"floor: {result.floor['commits_per_s']:,.0f} commits/s")
    except Exception as exc:  # the floor is context; the workloads still run
        _fail(result, f"{DB_LABELS[db]} floor: {exc!r}", None)

    try:
        with flowctl_server(db, args.pg_url, settings, args.keep) as proc:
            _bench_server(proc, args, result)
    except (RuntimeError, TimeoutError) as exc:  # did not start; the message holds its log
        _fail(result, f"{DB_LABELS[db]}: server did not start: {exc}", None)
    return result


def _bench_server(proc: FlowctlProcess, args: argparse.Namespace, result: DbResult) -> None:
    srv = Server(proc, httpx.Client(base_url=proc.url, timeout=60), args.poll_interval)
    with contextlib.ExitStack() as stack:
        if "W5" in args.only:
            try:
                srv.agent = stack.enter_context(BenchAgent.running())
            except BenchFailure as exc:  # W5 fails with this reason; the others still run
                srv.agent_error = str(exc)
        _bench_workloads(srv, args, result)


def _bench_workloads(srv: Server, args: argparse.Namespace, result: DbResult) -> None:
    proc = srv.proc
    ext = _PROFILE_EXT[args.profile_format]
    profiling = (
        py_spy(proc.pid, BENCH_DIR / "results" / f"profile-{result.db}.{ext}", args.profile_format)
        if args.profile
        else contextlib.nullcontext(None)
    )
    try:
        warm_up(srv)
        result.poll_cost_ms = srv.poll_cost_ms()
        console.print(
            f"one status poll costs the server ~{result.poll_cost_ms:.1f} ms CPU "
            f"(polling every {srv.poll_interval * 1000:.0f} ms)"
        )
        with profiling as written:
            for name in args.only:
                _run_workload(srv, name, result, args.repeat)
        if written and written.exists():
            result.profile = str(written)
        result.rss_mb = srv.rss() / 2**20
        result.rss_peak_mb = srv.rss_peak / 2**20
    except (BenchFailure, httpx.HTTPError, psutil.Error) as exc:
        _fail(result, f"{DB_LABELS[result.db]}: {exc}", proc)
    finally:
        srv.http.close()


_PROFILE_EXT = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}


def _run_workload(srv: Server, name: str, result: DbResult, repeat: int) -> None:
    """Run one workload `repeat` times; its figures are the per-key medians."""
    console.print(f"{name} ...", end=" ")
    result.attempted.append(name)
    samples = []
    for _ in range(repeat):
        try:
            samples.append(_measure_once(srv, name))
        except (BenchFailure, httpx.HTTPError) as exc:
            console.print("[bold red]FAILED[/bold red]")
            _fail(result, f"{DB_LABELS[result.db]} {name}: {exc}", srv.proc)
            with contextlib.suppress(httpx.HTTPError):
                srv.cancel_active()
            return
    figures = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    if repeat > 1:
        figures["samples"] = samples
    result.workloads[name] = figures
    headline = HEADLINES[name]
    console.print(
        f"{headline}: "
        + ", ".join(f"{s[headline]:,.2f}" for s in samples)
        + f" | server CPU {figures['server_cpu_s']:.2f}s, client CPU {figures['client_cpu_s']:.2f}s"
    )


HEADLINES = {
    "W1": "tasks_per_s",
    "W2": "ms_per_hop",
    "W3": "workflows_per_s",
    "W4": "wall_s",
    "W5": "paced_added_p50",
}


def _measure_once(srv: Server, name: str) -> dict[str, Any]:
    client, server_cpu = psutil.Process(), srv.cpu_seconds()
    client_cpu, started = sum(client.cpu_times()[:2]), time.perf_counter()
    figures = RUNNERS[name](srv)
    # CPU over the whole step (submit, wait, final GETs): is the server CPU-bound,
    # and does this client compete with it for cores?
    figures["step_wall_s"] = time.perf_counter() - started
    figures["server_cpu_s"] = srv.cpu_seconds() - server_cpu
    figures["client_cpu_s"] = sum(client.cpu_times()[:2]) - client_cpu
    srv.rss()
    return figures


def _fail(result: DbResult, message: str, proc: FlowctlProcess | None) -> None:
    result.failures.append(message)
    console.print(f"BENCHMARK FAILURE: {message}", style="bold red", markup=False)
    log = proc.log().strip() if proc else ""
    if log:
        console.print("[red]server log (tail):[/red]")
        console.print(log[-3000:], markup=False)


# --- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the report: how to read it from a result, and its target if any."""

    label: str
    workload: str | None  # None: measured whenever the server ran (RSS, floor)
    get: Callable[[DbResult], float | str | None]
    fmt: str
    targets: dict[str, float] = field(default_factory=dict)  # db -> bound
    at_least: bool = True  # the target is a minimum (else a maximum)

    def value(self, r: DbResult) -> float | str | None:
        return None if r.skipped else self.get(r)

    def passed(self, r: DbResult) -> bool | None:
        """None: no target here, or the workload was not asked for."""
        bound = self.targets.get(r.db)
        if bound is None or r.skipped:
            return None
        if self.workload not in r.attempted and (self.workload or not r.attempted):
            return None  # not asked for; or, for RSS and floor, nothing ran
        value = self.value(r)
        if value is None:  # asked for, but it failed
            return False
        return value >= bound if self.at_least else value <= bound

    def target_text(self, db: str) -> str:
        bound = self.targets.get(db)
        return "" if bound is None else f"{'>=' if self.at_least else '<='} {bound:g}"


def _w(workload: str, key: str) -> Callable[[DbResult], float | None]:
    return lambda r: r.workloads.get(workload, {}).get(key)


def _pair(workload: str, key: str) -> Callable[[DbResult], str | None]:
    """ "p50 / p95" of one W5 timing, as text (no target)."""

    def get(r: DbResult) -> str | None:
        figures = r.workloads.get(workload, {})
        p50, p95 = figures.get(f"{key}_p50"), figures.get(f"{key}_p95")
        return None if p50 is None or p95 is None else f"{p50:.2f} / {p95:.2f}"

    return get


def _in_floor_commits(workload: str, key: str) -> Callable[[DbResult], float | None]:
    """Floor commits/s divided by a task rate: what one task costs, in bare commits."""

    def get(r: DbResult) -> float | None:
        rate = r.workloads.get(workload, {}).get(key)
        floor = r.floor.get("commits_per_s")
        return floor / rate if rate and floor else None

    return get


def _hop_in_floor_commits(r: DbResult) -> float | None:
    """How many bare commits fit in one chain hop (a hop needs at least one)."""
    hop_ms = r.workloads.get("W2", {}).get("ms_per_hop")
    floor = r.floor.get("commits_per_s")
    return hop_ms * floor / 1000 if hop_ms and floor else None


BOTH = ("sqlite", "postgres")
FIGURES = [
    Figure(
        "W1 fanout-1000 tasks/s (submit->done)",
        "W1",
        _w("W1", "tasks_per_s"),
        "{:,.0f}",
        {"sqlite": 5000, "postgres": 2000},
    ),
    Figure("W1 engine tasks/s (started->done)", "W1", _w("W1", "engine_tasks_per_s"), "{:,.0f}"),
    Figure("W1 POST round trip ms (1,000 tasks)", "W1", _w("W1", "post_ms"), "{:.0f}"),
    Figure("W1 floor commits per task", "W1", _in_floor_commits("W1", "tasks_per_s"), "{:.1f}"),
    Figure(
        "W1 floor commits per task (engine)",
        "W1",
        _in_floor_commits("W1", "engine_tasks_per_s"),
        "{:.1f}",
    ),
    Figure(
        "W2 chain-200 ms/hop (tasks)",
        "W2",
        _w("W2", "ms_per_hop"),
        "{:.2f}",
        {"sqlite": 1.0, "postgres": 3.0},
        at_least=False,
    ),
    Figure("W2 ms/hop (run started->done / 200)", "W2", _w("W2", "ms_per_hop_run"), "{:.2f}"),
    Figure("W2 floor commits per hop", "W2", _hop_in_floor_commits, "{:.1f}"),
    Figure(
        "W3 runs-200x10 workflows/s", "W3", _w("W3", "workflows_per_s"), "{:,.0f}", {"sqlite": 200}
    ),
    Figure("W3 latency p50 ms", "W3", _w("W3", "latency_ms_p50"), "{:,.0f}"),
    Figure("W3 latency p95 ms", "W3", _w("W3", "latency_ms_p95"), "{:,.0f}"),
    Figure(
        "W4 sleep-100 wall s (ideal 2.0)",
        "W4",
        _w("W4", "wall_s"),
        "{:.3f}",
        dict.fromkeys(BOTH, 2.1),
        at_least=False,
    ),
    Figure(
        "W5 added ms/step p50, paced (step - agent)",
        "W5",
        _w("W5", "paced_added_p50"),
        "{:.2f}",
        {"sqlite": 2.0},
        at_least=False,
    ),
    Figure("W5 added ms/step p95, paced", "W5", _w("W5", "paced_added_p95"), "{:.2f}"),
    Figure("W5 hop ms p50 / p95, paced", "W5", _pair("W5", "paced_hop"), "{}"),
    Figure("W5 agent's own ms/call p50, paced", "W5", _w("W5", "paced_agent_p50"), "{:.2f}"),
    Figure("W5 agent-chain runs/s (100 runs, load)", "W5", _w("W5", "runs_per_s"), "{:,.1f}"),
    Figure("W5 added ms/step p50 / p95, load", "W5", _pair("W5", "load_added"), "{}"),
    Figure("W5 hop ms p50 / p95, load", "W5", _pair("W5", "load_hop"), "{}"),
    Figure("W5 agent's own ms/call p50, load", "W5", _w("W5", "load_agent_p50"), "{:.2f}"),
    Figure(
        "server RSS MB after the workloads",
        None,
        lambda r: r.rss_mb,
        "{:.0f}",
        dict.fromkeys(BOTH, 200),
        at_least=False,
    ),
    Figure("server RSS MB, peak sampled", None, lambda r: r.rss_peak_mb, "{:.0f}"),
    Figure(
        "floor: 1-row UPDATE commits/s", None, lambda r: r.floor.get("commits_per_s"), "{:,.0f}"
    ),
]
VERDICT = {None: "", True: "[green]pass[/green]", False: "[bold red]FAIL[/bold red]"}


def print_table(results: list[DbResult]) -> None:
    table = Table(title="flowctl benchmark", title_justify="left")
    table.add_column("figure")
    for r in results:
        table.add_column(DB_LABELS[r.db], justify="right")
        table.add_column("target", justify="right", style="dim")
        table.add_column("ok")
    for fig in FIGURES:
        row = [fig.label]
        for r in results:
            value = fig.value(r)
            row += [
                "skipped" if r.skipped else ("-" if value is None else fig.fmt.format(value)),
                fig.target_text(r.db),
                VERDICT[fig.passed(r)],
            ]
        table.add_row(*row)
    console.print(table)
    console.print(
        f"W1-W3 set config.max_concurrency={MAX_CONCURRENCY} (the default, 10, would cap "
        "the run); W4 uses 50. W5: 100 agent runs, 8 POSTs at a time. "
        "Figures are medians of the repeats."
    )


def target_misses(results: list[DbResult]) -> list[str]:
    return [
        f"{DB_LABELS[r.db]}: {fig.label} {fig.target_text(r.db)}"
        for r in results
        for fig in FIGURES
        if fig.passed(r) is False
    ]


def machine_info(pg_url: str, with_postgres: bool) -> dict[str, Any]:
    return {
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "flowctl_version": flowctl_version,
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres_version(pg_url) if with_postgres else None,
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def write_json(
    path: Path,
    machine: dict,
    results: list[DbResult],
    misses: list[str],
    args: argparse.Namespace,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine,
        "workloads_run": args.only,
        "repeat": args.repeat,
        "poll_interval_s": args.poll_interval,
        "max_concurrency_w1_w3": MAX_CONCURRENCY,
        "targets": {
            fig.label: {db: fig.target_text(db) for db in fig.targets}
            for fig in FIGURES
            if fig.targets
        },
        "target_misses": misses,
        "results": {
            r.db: {
                "skipped": r.skipped,
                "settings": r.settings,
                "floor": r.floor,
                "workloads": r.workloads,
                "rss_mb": r.rss_mb,
                "rss_peak_mb": r.rss_peak_mb,
                "poll_cost_ms": r.poll_cost_ms,
                "failures": r.failures,
                "profile": r.profile,
                "figures": {fig.label: fig.value(r) for fig in FIGURES},
                "verdicts": {fig.label: fig.passed(r) for fig in FIGURES if fig.targets},
            }
            for r in results
        },
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="e.g. W1,W3")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--pg-url", default=os.environ.get("FLOWCTL_BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--workers", type=int, help="FLOWCTL_WORKER_CONCURRENCY (default 100)")
    parser.add_argument("--profile", action="store_true", help="py-spy record the server")
    parser.add_argument("--profile-format", choices=sorted(_PROFILE_EXT), default="flamegraph")
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per workload; figures are medians [5]"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=POLL_INTERVAL,
        help="seconds between status polls [0.02]; figures use server timestamps either way",
    )
    parser.add_argument("--keep", action="store_true", help="keep the server's temp data dir")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    args = parser.parse_args(argv)
    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {WORKLOADS}")
    args.only = [w for w in WORKLOADS if w in only]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    machine = machine_info(args.pg_url, "postgres" in dbs)
    console.print(
        f"flowctl {machine['flowctl_version']} | {machine['cpu_count']} CPU "
        f"({machine['cpu_model']}) | Python {machine['python']} | SQLite {machine['sqlite']} | "
        f"PostgreSQL {machine['postgres'] or '-'} | workloads {','.join(args.only)}"
    )
    results = [bench_database(db, args) for db in dbs]
    print_table(results)
    misses = target_misses(results)
    failures = [f for r in results for f in r.failures]
    write_json(args.json, machine, results, misses, args)
    console.print(f"results written to {args.json}")
    for r in results:
        if r.profile:
            console.print(f"profile ({DB_LABELS[r.db]}): {r.profile}")
    if misses:
        console.print("[yellow]targets missed:[/yellow]\n  " + "\n  ".join(misses))
    if failures:
        console.print("[bold red]BENCHMARK FAILED:[/bold red]\n  " + "\n  ".join(failures))
        return 1
    return 1 if (args.strict and misses) else 0


if __name__ == "__main__":
    sys.exit(main())
