"""Reusable definitions (agent workflows: kind `steps`) and their earlier versions,
plus the one listing of `GET /api/v1/workflows`, which pages over definitions and
FlowCtl workflows together.

The current version of a definition is its `definitions` row; every earlier one
is a row of `definition_versions`, written just before the update that replaced
it. An earlier version's `updated_at` is when it was superseded, so the current
version began at the newest earlier version's `updated_at` (or at the
definition's `created_at` when there is none).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, literal_column, select, text, union_all, update
from sqlalchemy.engine import Connection

from flowctl.store.clock import read_now
from flowctl.store.schema import definition_versions, definitions, runs, step_runs


def lock_name(conn: Connection, kind: str, name: str) -> None:
    """Serialise writers of one definition name until this transaction ends, so
    that two racing creates (or renames) cannot both take a free name. SQLite
    already serialises every write transaction."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"definitions:{kind}:{name}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def name_taken(conn: Connection, kind: str, name: str, *, exclude_id: str | None = None) -> bool:
    """Is `name` used by a definition of `kind` that is not deleted?"""
    query = select(definitions.c.id).where(
        definitions.c.kind == kind,
        definitions.c.name == name,
        definitions.c.status != "deleted",
    )
    if exclude_id is not None:
        query = query.where(definitions.c.id != exclude_id)
    return conn.execute(query.limit(1)).first() is not None


def insert_definition(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """Insert a definition; return it as stored (every column)."""
    now = read_now(conn)
    full = dict.fromkeys(definitions.c.keys())
    full.update(row, created_at=now, updated_at=now)
    conn.execute(insert(definitions), full)
    return full


def get_definition(
    conn: Connection, definition_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = select(definitions).where(definitions.c.id == definition_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def definition_of_version(conn: Connection, version_id: str) -> str | None:
    """The definition an earlier version's id belongs to."""
    return conn.execute(
        select(definition_versions.c.definition_id).where(definition_versions.c.id == version_id)
    ).scalar()


def current_version_started(conn: Connection, definition: dict[str, Any]) -> float:
    """When the definition's current version came to be."""
    superseded = conn.execute(
        select(func.max(definition_versions.c.updated_at)).where(
            definition_versions.c.definition_id == definition["id"]
        )
    ).scalar()
    return float(superseded) if superseded is not None else definition["created_at"]


def update_definition(
    conn: Connection,
    current: dict[str, Any],
    values: dict[str, Any],
    *,
    snapshot_id: str | None = None,
) -> dict[str, Any]:
    """Apply `values` to the definition `current` (read in this transaction, locked
    on PostgreSQL). With `snapshot_id`, the current version is first kept as an
    earlier version under that id, superseded now. Returns the row as stored."""
    now = read_now(conn)
    if snapshot_id is not None:
        conn.execute(
            insert(definition_versions),
            {
                "id": snapshot_id,
                "definition_id": current["id"],
                "version": current["version"],
                "name": current["name"],
                "description": current["description"],
                # A superseded version cannot be executed any more.
                "status": "inactive",
                "label": current["label"],
                "source": current["source"],
                "graph": current["graph"],
                "config": current["config"],
                "created_at": current_version_started(conn, current),
                "updated_at": now,
            },
        )
    conn.execute(
        update(definitions)
        .where(definitions.c.id == current["id"])
        .values(**values, updated_at=now)
    )
    return {**current, **values, "updated_at": now}


def list_versions(
    conn: Connection, definition_id: str, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Earlier versions, newest first, and how many there are."""
    total = conn.execute(
        select(func.count())
        .select_from(definition_versions)
        .where(definition_versions.c.definition_id == definition_id)
    ).scalar_one()
    rows = conn.execute(
        select(definition_versions)
        .where(definition_versions.c.definition_id == definition_id)
        .order_by(definition_versions.c.version.desc())
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows], total


# --- the shared listing of GET /api/v1/workflows ---------------------------------


@dataclass(slots=True)
class WorkflowListFilter:
    """Definitions of `definition_kind` with a status in `definition_statuses`,
    and runs of `run_kind` with a status in `run_statuses`; either side is left
    out when its statuses are an empty list (None means any status)."""

    definition_kind: str
    run_kind: str
    definition_statuses: Sequence[str] | None
    run_statuses: Sequence[str] | None
    name: str | None = None
    sort_by: str = "created_at"  # name | created_at | updated_at | version
    descending: bool = True
    offset: int = 0
    limit: int = 20


def list_workflows(
    conn: Connection, flt: WorkflowListFilter
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """One page of definitions and runs together, in the filter's order.

    Returns `("definition", row)` and `("run", row)` entries (a run's row carries
    its steps under "steps") and the total over both.
    """
    parts = []
    total = 0
    if flt.definition_statuses != []:
        where = [definitions.c.kind == flt.definition_kind]
        if flt.definition_statuses is not None:
            where.append(definitions.c.status.in_(flt.definition_statuses))
        if flt.name is not None:
            where.append(definitions.c.name == flt.name)
        total += conn.execute(
            select(func.count()).select_from(definitions).where(*where)
        ).scalar_one()
        parts.append(
            select(
                literal_column("'definition'").label("source"),
                definitions.c.id,
                definitions.c.name,
                definitions.c.created_at,
                definitions.c.updated_at,
                definitions.c.version,
            ).where(*where)
        )
    if flt.run_statuses != []:
        where = [runs.c.kind == flt.run_kind]
        if flt.run_statuses is not None:
            where.append(runs.c.status.in_(flt.run_statuses))
        if flt.name is not None:
            where.append(runs.c.name == flt.name)
        total += conn.execute(select(func.count()).select_from(runs).where(*where)).scalar_one()
        parts.append(
            select(
                literal_column("'run'").label("source"),
                runs.c.id,
                runs.c.name,
                runs.c.created_at,
                runs.c.updated_at,
                runs.c.definition_version.label("version"),
            ).where(*where)
        )
    if not parts or total == 0:
        return [], total
    both = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
    key = both.c[flt.sort_by]
    page = conn.execute(
        select(both.c.source, both.c.id)
        .order_by(key.desc() if flt.descending else key.asc(), both.c.id)
        .offset(flt.offset)
        .limit(flt.limit)
    ).all()
    definition_ids = [row.id for row in page if row.source == "definition"]
    run_ids = [row.id for row in page if row.source == "run"]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    if definition_ids:
        for row in conn.execute(
            select(definitions).where(definitions.c.id.in_(definition_ids))
        ).mappings():
            found[("definition", row["id"])] = dict(row)
    if run_ids:
        steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for step in conn.execute(
            select(step_runs)
            .where(step_runs.c.run_id.in_(run_ids))
            .order_by(step_runs.c.run_id, step_runs.c.seq)
        ).mappings():
            steps[step["run_id"]].append(dict(step))
        for row in conn.execute(select(runs).where(runs.c.id.in_(run_ids))).mappings():
            found[("run", row["id"])] = {**row, "steps": steps.get(row["id"], [])}
    entries = [
        (row.source, found[(row.source, row.id)]) for row in page if (row.source, row.id) in found
    ]
    return entries, total
