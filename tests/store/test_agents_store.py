"""The agents table on SQLite and PostgreSQL: migration 0002 creates exactly
what schema.py declares (and can be undone), and names stay unique among live
agents even when two transactions register one at once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from flowctl.store import agents as store
from flowctl.store.database import MIGRATIONS, Database
from flowctl.store.schema import metadata


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'flowctl.db'}"


def _alembic(conn, target: str, *, down: bool = False) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(cfg, target)


def _diff(conn) -> list:
    return compare_metadata(MigrationContext.configure(conn), metadata)


def _row(name: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "url": "http://agent:8080",
        "description": None,
        "auth_type": "none",
        "auth_config_encrypted": None,
        "auth_config_keys": None,
        "timeout_ms": 30000,
        "retry_config": {"max_retries": 3},
        "status": "active",
    }


async def _with_db(url: str, body) -> None:
    db = Database(url)
    db.open(lock=False)
    try:
        await db.migrate()
        await body(db)
    finally:
        await db.close()


def test_migration_matches_schema_and_downgrades(url: str) -> None:
    async def body(db: Database) -> None:
        assert await db.read(_diff) == []
        await db.write(_alembic, "0001", down=True)
        tables = await db.read(lambda conn: inspect(conn).get_table_names())
        assert "agents" not in tables and "runs" in tables
        await db.write(_alembic, "head")
        assert await db.read(_diff) == []

    asyncio.run(_with_db(url, body))


def test_racing_registrations_of_one_name(url: str) -> None:
    async def body(db: Database) -> None:
        name = f"racer-{uuid.uuid4().hex[:8]}"
        results = await asyncio.gather(
            *(db.write(store.create_agent, _row(name)) for _ in range(4)),
            return_exceptions=True,
        )
        created = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, store.DuplicateAgentName)]
        assert len(created) == 1 and len(refused) == 3, results
        assert str(refused[0]) == f"Agent with name '{name}' already exists"
        # Deleted, the name is free again; the deleted one stays readable.
        assert await db.write(store.delete_agent, created[0]["id"])
        again = await db.write(store.create_agent, _row(name))
        assert (await db.read(store.get_agent, created[0]["id"]))["status"] == "deleted"
        assert (await db.read(store.get_agents_by_names, [name]))[name]["id"] == again["id"]

    asyncio.run(_with_db(url, body))


def test_created_row_equals_stored_row(url: str) -> None:
    async def body(db: Database) -> None:
        created = await db.write(store.create_agent, _row(f"a-{uuid.uuid4().hex[:8]}"))
        assert await db.read(store.get_agent, created["id"]) == created

    asyncio.run(_with_db(url, body))
