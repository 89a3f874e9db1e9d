"""agents

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_LIVE = "status <> 'deleted'"


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("auth_type", sa.String(length=16), nullable=False),
        sa.Column("auth_config_encrypted", sa.Text(), nullable=True),
        sa.Column("auth_config_keys", _JSON, nullable=True),
        sa.Column("timeout_ms", sa.Integer(), nullable=False),
        sa.Column("retry_config", _JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agents_status_created_at"), ["status", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_agents_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            "ux_agents_name_live",
            ["name"],
            unique=True,
            sqlite_where=sa.text(_LIVE),
            postgresql_where=sa.text(_LIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_agents_name_live", sqlite_where=sa.text(_LIVE), postgresql_where=sa.text(_LIVE)
        )
        batch_op.drop_index(batch_op.f("ix_agents_created_at"))
        batch_op.drop_index(batch_op.f("ix_agents_status_created_at"))

    op.drop_table("agents")
