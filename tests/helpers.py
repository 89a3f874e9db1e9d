"""What end-to-end tests share: an HTTP client with waits, and payload helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx
import pytest

from flowctl.testing import processes

TERMINAL = {"completed", "failed", "cancelled"}

PG_URL = os.environ.get("FLOWCTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_pg_checked: bool | None = None


def require_postgres() -> str:
    global _pg_checked
    if _pg_checked is None:
        _pg_checked = processes.postgres_reachable(PG_URL)
    if not _pg_checked:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} (set FLOWCTL_TEST_PG_URL)")
    return PG_URL


class Api:
    """A thin HTTP client with the waits end-to-end tests need."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def submit(self, body: dict) -> dict:
        resp = self.http.post("/api/v1/workflows", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def workflow(self, workflow_id: str) -> dict:
        resp = self.http.get(f"/api/v1/workflows/{workflow_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait(
        self,
        workflow_id: str,
        until: Callable[[dict], bool] = lambda wf: wf["status"] in TERMINAL,
        timeout: float = 30.0,
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            wf = self.workflow(workflow_id)
            if until(wf):
                return wf
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on workflow: {wf}")
            time.sleep(0.02)

    def wait_task(self, workflow_id: str, name: str, status: str, timeout: float = 30.0) -> dict:
        wf = self.wait(
            workflow_id,
            lambda wf: any(t["name"] == name and t["status"] == status for t in wf["tasks"]),
            timeout,
        )
        return task(wf, name)


def task(workflow: dict, name: str) -> dict:
    return next(t for t in workflow["tasks"] if t["name"] == name)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def sh(script: str, **extra) -> dict:
    """A `generic` task payload that runs a POSIX shell script (the shell is
    the program being run, chosen by the user, not one flowctl adds)."""
    return {"command": "sh", "args": ["-c", script], **extra}
