"""Agents: remote A2A services that `agent` steps call.

Plain functions `fn(conn, ...)` run by `Database.write/read`. Rows are dicts of
the `agents` table; `auth_config_encrypted` is ciphertext here and stays so:
encryption and decryption belong to the service layer (engine/agents.py), which
holds the key.

Names are unique among agents that are not deleted: checked in the writing
transaction (a clear 400 before anything is written) and enforced by the partial
unique index `ux_agents_name_live`, which catches two PostgreSQL transactions
that check at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from flowctl.store.clock import read_now
from flowctl.store.schema import agents

DELETED = "deleted"
LIVE_STATUSES = ("active", "inactive")


class DuplicateAgentName(Exception):
    def __init__(self, name: str):
        super().__init__(f"Agent with name '{name}' already exists")
        self.name = name


class AgentDeleted(Exception):
    """An update or delete of an agent that is already deleted."""

    def __init__(self, agent_id: str):
        super().__init__(f"Agent '{agent_id}' is deleted")
        self.agent_id = agent_id


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def _name_taken(conn: Connection, name: str, *, except_id: str | None = None) -> bool:
    query = select(agents.c.id).where(agents.c.name == name, agents.c.status != DELETED)
    if except_id is not None:
        query = query.where(agents.c.id != except_id)
    return conn.execute(query.limit(1)).first() is not None


def _is_name_conflict(exc: IntegrityError) -> bool:
    text = str(exc.orig or exc)
    return "ux_agents_name_live" in text or "agents.name" in text


def create_agent(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """Insert an agent (every column but the timestamps); the row as stored.
    DuplicateAgentName if a live agent has the name."""
    if _name_taken(conn, row["name"]):
        raise DuplicateAgentName(row["name"])
    now = read_now(conn)
    stored = {**row, "created_at": now, "updated_at": now}
    try:
        conn.execute(insert(agents), stored)
    except IntegrityError as exc:
        if _is_name_conflict(exc):
            raise DuplicateAgentName(row["name"]) from None
        raise
    return {c.key: stored.get(c.key) for c in agents.c}


def get_agent(conn: Connection, agent_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(agents).where(agents.c.id == agent_id)).first()
    return _row(row) if row is not None else None


def list_agents(
    conn: Connection, *, statuses: Sequence[str], offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of agents with one of `statuses`, newest first, and how many there are."""
    where = agents.c.status.in_(list(statuses))
    total = conn.execute(select(func.count()).select_from(agents).where(where)).scalar_one()
    rows = conn.execute(
        select(agents)
        .where(where)
        .order_by(agents.c.created_at.desc(), agents.c.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return [_row(r) for r in rows], int(total)


def update_agent(
    conn: Connection, agent_id: str, changes_for: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """Apply `changes_for(current_row)` (a dict of columns) to an agent, in one
    transaction with the read it is computed from. None if there is no such
    agent; AgentDeleted if it is deleted; DuplicateAgentName on a taken name.
    Whatever `changes_for` raises rolls the transaction back."""
    current = conn.execute(select(agents).where(agents.c.id == agent_id).with_for_update()).first()
    if current is None:
        return None
    row = _row(current)
    if row["status"] == DELETED:
        raise AgentDeleted(agent_id)
    changes = changes_for(row)
    name = changes.get("name")
    if name is not None and name != row["name"] and _name_taken(conn, name, except_id=agent_id):
        raise DuplicateAgentName(name)
    changes = {**changes, "updated_at": read_now(conn)}
    try:
        conn.execute(update(agents).where(agents.c.id == agent_id).values(**changes))
    except IntegrityError as exc:
        if _is_name_conflict(exc):
            raise DuplicateAgentName(name or row["name"]) from None
        raise
    return {**row, **changes}


def delete_agent(conn: Connection, agent_id: str) -> bool:
    """Soft delete: status 'deleted'. False if there is no such agent;
    AgentDeleted if it already is."""
    result = conn.execute(
        update(agents)
        .where(agents.c.id == agent_id, agents.c.status != DELETED)
        .values(status=DELETED, updated_at=read_now(conn))
    )
    if result.rowcount:
        return True
    exists = conn.execute(select(agents.c.id).where(agents.c.id == agent_id)).first()
    if exists is not None:
        raise AgentDeleted(agent_id)
    return False


def get_agents_by_names(conn: Connection, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The agents (active or inactive, never deleted) with these names, by name.
    Rows as stored: `auth_config_encrypted` is still ciphertext
    (`engine.agents.resolve_row` decrypts it)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = conn.execute(
        select(agents).where(agents.c.name.in_(wanted), agents.c.status != DELETED)
    ).all()
    return {r.name: _row(r) for r in rows}


def active_agent_names(conn: Connection, names: Iterable[str]) -> set[str]:
    """Which of `names` are active agents (for validating definitions)."""
    wanted = sorted(set(names))
    if not wanted:
        return set()
    rows = conn.execute(
        select(agents.c.name).where(agents.c.name.in_(wanted), agents.c.status == "active")
    ).all()
    return {r.name for r in rows}
