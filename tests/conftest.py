"""Fixtures that start real flowctl processes on free ports.

PostgreSQL tests use FLOWCTL_TEST_PG_URL (default: the local server's `test`
database) and get a fresh scratch database each. When no PostgreSQL answers they
skip, except under CI=true, where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowctl.testing import processes
from flowctl.testing.processes import FlowctlProcess
from helpers import require_postgres


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    url = processes.create_database(require_postgres())
    try:
        yield url
    finally:
        processes.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> Iterator[str | None]:
    """Run the test once on SQLite (None: the data dir's file) and once on PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    url = processes.create_database(require_postgres())
    try:
        yield url
    finally:
        processes.drop_database(url)


class Processes:
    """Starts flowctl processes for one test and stops every one at the end."""

    def __init__(self, data_dir: Path, database_url: str | None):
        self.data_dir = data_dir
        self.database_url = database_url
        self.started: list[FlowctlProcess] = []

    def server(self, *args: str, **settings: object) -> FlowctlProcess:
        settings.setdefault("log_level", "warning")
        proc = processes.server(self.data_dir, self.database_url, *args, **settings)
        self.started.append(proc)
        return proc.start()

    def worker(self, *args: str, **settings: object) -> FlowctlProcess:
        assert self.database_url, "flowctl worker needs PostgreSQL"
        settings.setdefault("log_level", "warning")
        proc = processes.worker(self.data_dir, self.database_url, *args, **settings)
        self.started.append(proc)
        return proc.start()

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.kill()


def _processes(tmp_path: Path, database_url: str | None) -> Iterator[Processes]:
    started = Processes(tmp_path / "data", database_url)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def procs(tmp_path: Path, database_url: str | None) -> Iterator[Processes]:
    """Processes on the test's database: SQLite, then PostgreSQL."""
    yield from _processes(tmp_path, database_url)


@pytest.fixture
def sqlite_procs(tmp_path: Path) -> Iterator[Processes]:
    yield from _processes(tmp_path, None)


@pytest.fixture
def pg_procs(tmp_path: Path, pg_database: str) -> Iterator[Processes]:
    yield from _processes(tmp_path, pg_database)
