"""Persistence: tables, migrations, and the queries the engine and API run.

Every query is written once with SQLAlchemy Core; the few places where
PostgreSQL and SQLite differ (row locks, NOTIFY) are marked where they occur.
Store functions are synchronous and take a Connection inside a transaction;
`Database.write`/`read` run them, so one function serves both databases.
"""
