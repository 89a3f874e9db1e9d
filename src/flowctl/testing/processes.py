"""Start flowctl servers and workers as real subprocesses, and scratch
PostgreSQL databases for them.

The end-to-end tests and `bench/` use this so both drive flowctl the way a user
does: a process started from the command line, talked to over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FLOWCTL = [sys.executable, "-m", "flowctl.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class FlowctlProcess:
    """One `flowctl server` or `flowctl worker` process."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self.port is not None, "a worker has no HTTP port"
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, wait: float = 30.0) -> FlowctlProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if self.port is not None:
            self.wait_ready(wait)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"flowctl exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"flowctl did not answer /health in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing gets to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def flowctl_env(
    data_dir: Path, database_url: str | None = None, **settings: object
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCTL_")}
    env["FLOWCTL_DATA_DIR"] = str(data_dir)
    if database_url:
        env["FLOWCTL_DATABASE_URL"] = database_url
    for key, value in settings.items():
        env[f"FLOWCTL_{key.upper()}"] = str(value)
    return env


def server(
    data_dir: Path, database_url: str | None = None, *extra: str, **settings: object
) -> FlowctlProcess:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    return FlowctlProcess(
        args=[*FLOWCTL, "server", "--port", str(port), *extra],
        env=flowctl_env(data_dir, database_url, **settings),
        log_path=data_dir / f"server-{port}.log",
        port=port,
    )


def worker(data_dir: Path, database_url: str, *extra: str, **settings: object) -> FlowctlProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex[:8]
    return FlowctlProcess(
        args=[*FLOWCTL, "worker", *extra],
        env=flowctl_env(data_dir, database_url, **settings),
        log_path=data_dir / f"worker-{name}.log",
    )


# --- scratch PostgreSQL databases ------------------------------------------------


def _admin_dsn(url: str) -> tuple[str, str]:
    """(dsn of the server's maintenance database, the URL without a database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    admin = parsed.set(database="postgres")
    return admin.render_as_string(hide_password=False), parsed.render_as_string(hide_password=False)


def postgres_reachable(url: str, timeout: float = 2.0) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(_admin_dsn(url)[0], timeout=timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def create_database(url: str) -> str:
    """A new empty database on the server of `url`; returns its URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"flowctl_t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(_admin_dsn(url)[0])
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database

    async def drop() -> None:
        conn = await asyncpg.connect(_admin_dsn(url)[0])
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())
