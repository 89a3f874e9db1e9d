"""`flowctl server`, `flowctl worker`, `flowctl migrate`."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from flowctl import __version__
from flowctl.config import Settings

app = typer.Typer(
    help="flowctl: durable workflow orchestration. One command on SQLite, scale-out on PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the SQLite database lives [.flowctl]")
]
Workers = Annotated[
    int | None, typer.Option("--workers", help="Steps this process runs at once [100]", min=1)
]
LogLevel = Annotated[str | None, typer.Option("--log-level", help="debug, info, warning, error")]


def _settings(**overrides) -> Settings:
    try:
        return Settings().with_overrides(**overrides)
    except Exception as exc:  # pydantic's message names the bad setting
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _runtime(settings: Settings, **kwargs):
    """The engine, with its database opened here so that a locked SQLite data
    directory is a one-line error rather than a failed startup traceback."""
    from flowctl.engine.runtime import Runtime
    from flowctl.security.secrets import SecretKeyError
    from flowctl.store.database import DataDirLocked

    runtime = Runtime(settings, **kwargs)
    try:
        runtime.db.open()
    except DataDirLocked as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        _ = runtime.agents.box  # the secret key: load (or create) it now, not on first use
    except SecretKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot read or create the secret key file: {exc}", err=True)
        raise typer.Exit(2) from None
    return runtime


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Address to bind [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [8000]")] = None,
    data_dir: DataDir = None,
    workers: Workers = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: leave steps to `flowctl worker`")
    ] = False,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Allow binding a non-loopback address with auth off"
        ),
    ] = False,
    log_level: LogLevel = None,
) -> None:
    """Run the API, the engine and a worker pool (the embedded default)."""
    import uvicorn

    from flowctl.api.app import create_app

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        worker_concurrency=workers,
        run_worker=False if no_worker else None,
        insecure_no_auth=True if insecure_no_auth else None,
        log_level=log_level,
    )
    if not _is_loopback(settings.host) and not settings.insecure_no_auth:
        typer.echo(
            f"error: refusing to bind {settings.host} with authentication off: anyone who can "
            "reach it could run commands on this machine. Bind 127.0.0.1, or pass "
            "--insecure-no-auth if the network is trusted.",
            err=True,
        )
        raise typer.Exit(2)
    _configure_logging(settings.log_level)
    runtime = _runtime(settings)
    config = uvicorn.Config(
        create_app(settings, runtime),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=max(settings.shutdown_grace, 1),
    )
    server = uvicorn.Server(config)
    ok = server.run()
    if ok is False or (server.started is False):
        raise typer.Exit(1)


@app.command()
def worker(
    data_dir: DataDir = None,
    workers: Workers = None,
    log_level: LogLevel = None,
) -> None:
    """Run the engine and a worker pool only (scale-out on PostgreSQL)."""
    import uvloop

    settings = _settings(data_dir=data_dir, worker_concurrency=workers, log_level=log_level)
    _configure_logging(settings.log_level)

    runtime = _runtime(settings, with_worker=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    try:
        uvloop.run(main())
    except Exception as exc:
        logging.getLogger("flowctl").error("worker failed: %s", exc)
        raise typer.Exit(1) from None


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Create or upgrade the database schema, then exit."""
    from flowctl.store.database import Database

    settings = _settings(data_dir=data_dir)

    async def main() -> None:
        db = Database(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous)
        db.open(lock=False)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(main())
    typer.echo(f"database is up to date: {settings.db_url.split('@')[-1]}")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()
