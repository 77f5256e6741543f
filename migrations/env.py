"""Alembic environment: the schema lives in `segmentation`, and so does its version table.

The job passes its own connection (`config.attributes["connection"]`); plain `alembic`
on the command line reads the same settings as the job instead.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from alembic import context

from segmentation.db import SCHEMA


def _run(connection: sa.Connection) -> None:
    connection.execute(sa.text(f"create schema if not exists {SCHEMA}"))
    context.configure(
        connection=connection,
        version_table_schema=SCHEMA,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from segmentation.db import database
    from segmentation.settings import load_settings

    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(database(load_settings()))
        with engine.begin() as own_connection:
            _run(own_connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
