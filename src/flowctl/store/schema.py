"""The tables. Alembic migrations in `migrations/` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
Id = String(64)
# Epoch seconds from the database clock (see clock.py).
Time = Double
# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid alias.
EventId = BigInteger().with_variant(Integer(), "sqlite")

_CLAIMABLE = "status IN ('pending', 'retrying') AND deps_remaining = 0"

definitions = Table(
    "definitions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("description", Text),
    # which syntax it was written in: tasks | steps | flow
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # active | inactive | deleted
    Column("version", Integer, nullable=False),
    Column("label", String(64)),  # free-form version label ("1.0.0")
    Column("source", Json),  # the definition as the client wrote it
    Column("graph", Json, nullable=False),  # compiled steps (domain.graph)
    Column("config", Json),
    Column("tags", Json),
    Column("owner_id", Id),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Index(None, "kind", "status", "created_at"),
    Index(None, "name"),
)

# Earlier versions of a definition, kept readable after an update.
definition_versions = Table(
    "definition_versions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("definition_id", Id, ForeignKey("definitions.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text),
    Column("status", String(16), nullable=False),
    Column("label", String(64)),
    Column("source", Json),
    Column("graph", Json, nullable=False),
    Column("config", Json),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("definition_id", "version"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("definition_id", Id, nullable=False),
    Column("definition_version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text),
    Column("status", String(16), nullable=False),
    Column("input", Json),
    Column("result", Json),
    Column("error", Text),
    Column("config", Json),
    Column("max_concurrency", Integer, nullable=False),
    Column("timeout_s", Double),
    Column("deadline_at", Time),  # started_at + timeout_s, set when the run starts
    Column("triggered_by", String(255)),
    Column("cancelled_by", String(255)),
    Column("owner_id", Id),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Column("started_at", Time),
    Column("completed_at", Time),
    Column("cancelled_at", Time),
    # list filters and sorts of the API surfaces
    Index(None, "kind", "status", "created_at"),
    Index(None, "kind", "created_at"),
    Index(None, "definition_id", "created_at"),
    Index(None, "status", "updated_at"),
    # the timeout sweep reads only active runs
    Index(
        "ix_runs_deadline_active",
        "deadline_at",
        sqlite_where=text("status = 'running'"),
        postgresql_where=text("status = 'running'"),
    ),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("run_id", Id, ForeignKey("runs.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # position in the definition
    Column("name", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("agent", String(255)),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("payload", Json),  # as written, may hold ${...}
    Column("has_templates", Integer, nullable=False),
    Column("input", Json),  # resolved payload of the latest attempt
    Column("result", Json),
    Column("error", Text),
    Column("dependencies", Json, nullable=False),
    Column("dependents", Json, nullable=False),
    Column("deps_remaining", Integer, nullable=False),
    Column("max_retries", Integer, nullable=False),
    Column("retry_count", Integer, nullable=False),
    Column("retry_policy", Json, nullable=False),
    Column("timeout_s", Double),
    # when a pending or retrying step may next be claimed
    Column("available_at", Time, nullable=False),
    # the lease: who runs it, until when, and which claim (the fencing token)
    Column("lease_owner", String(128)),
    Column("lease_epoch", Integer, nullable=False),
    Column("lease_expires_at", Time),
    # progress an executor must not lose across a crash (a remote task id)
    Column("checkpoint", Json),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Column("started_at", Time),
    Column("completed_at", Time),
    UniqueConstraint("run_id", "name"),
    # run status derivation and per-run concurrency count by (run, status)
    Index(None, "run_id", "status"),
    # the rescuer reads expired leases; the backoff timer reads the next retry
    Index(
        "ix_step_runs_lease",
        "lease_expires_at",
        sqlite_where=text("status = 'running'"),
        postgresql_where=text("status = 'running'"),
    ),
    Index(
        "ix_step_runs_retry",
        "available_at",
        sqlite_where=text("status = 'retrying'"),
        postgresql_where=text("status = 'retrying'"),
    ),
)

# The queue: claim in priority order among steps that may run now.
Index(
    "ix_step_runs_ready",
    step_runs.c.priority.desc(),
    step_runs.c.available_at,
    step_runs.c.seq,
    sqlite_where=text(_CLAIMABLE),
    postgresql_where=text(_CLAIMABLE),
)

# Append-only: every state change and log line, in order. Logs, WebSockets,
# webhooks and metrics read from here.
events = Table(
    "events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("run_id", Id, nullable=False),
    Column("step_id", Id),
    Column("type", String(64), nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text),
    Column("data", Json),
    Column("created_at", Time, nullable=False),
    Index(None, "run_id", "id"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("started_at", Time, nullable=False),
    Column("heartbeat_at", Time, nullable=False),
    Column("stopped_at", Time),
)

# Remote A2A services that `agent` steps call. Deleting one is soft (status
# 'deleted'): runs that used it keep a readable record, and its name is free again.
agents = Table(
    "agents",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("description", Text),
    Column("auth_type", String(16), nullable=False),  # none | bearer | apikey
    # Fernet token of the JSON auth_config (security/secrets.py); NULL when none.
    Column("auth_config_encrypted", Text),
    # the names of auth_config's keys, in clear, to show it masked without the key
    Column("auth_config_keys", Json),
    Column("timeout_ms", Integer, nullable=False),
    Column("retry_config", Json, nullable=False),
    Column("status", String(16), nullable=False),  # active | inactive | deleted
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Index(None, "status", "created_at"),
    Index(None, "created_at"),
    # one live agent per name; a deleted agent's name may be used again
    Index(
        "ux_agents_name_live",
        "name",
        unique=True,
        sqlite_where=text("status <> 'deleted'"),
        postgresql_where=text("status <> 'deleted'"),
    ),
)
