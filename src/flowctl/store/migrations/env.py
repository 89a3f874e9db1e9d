"""Alembic environment: migrations run on a connection flowctl hands in
(`config.attributes["connection"]`), so the same code serves SQLite and
PostgreSQL, sync and async engines."""

from alembic import context

from flowctl.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` on the command line
    from sqlalchemy import create_engine

    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
