"""One server per database per test module: most end-to-end tests only need a
running flowctl, and starting one per test would dominate the suite's time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowctl.testing import processes
from helpers import Api, require_postgres


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def api(request, tmp_path_factory) -> Iterator[Api]:
    database_url = None
    if request.param == "postgres":
        database_url = processes.create_database(require_postgres())
    try:
        yield from _serve(tmp_path_factory.mktemp(f"server-{request.param}"), database_url)
    finally:
        if database_url:
            processes.drop_database(database_url)


@pytest.fixture(scope="module")
def sqlite_api(tmp_path_factory) -> Iterator[Api]:
    yield from _serve(tmp_path_factory.mktemp("server"), None)


def _serve(data_dir: Path, database_url: str | None) -> Iterator[Api]:
    server = processes.server(
        data_dir, database_url, log_level="warning", maintenance_interval=0.5
    ).start()
    client = Api(server.url)
    client.server = server
    try:
        yield client
    finally:
        server.kill()
