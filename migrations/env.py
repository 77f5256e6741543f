"""Alembic environment: views in `segmentation`, tables and the version table in `segmentation_internal`.

The version table lives in `segmentation_internal` at every revision, so the schema BI
tools browse never lists it. Databases migrated by earlier versions of the job have it in
`segmentation`: it is moved, in the migration's transaction, before Alembic reads it.

The job passes its own connection (`config.attributes["connection"]`); plain `alembic`
on the command line reads the same settings as the job instead.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from alembic import context

from segmentation.db import INTERNAL_SCHEMA, SCHEMA, version_table_schema


def _run(connection: sa.Connection) -> None:
    connection.execute(sa.text(f"create schema if not exists {SCHEMA}"))
    connection.execute(sa.text(f"create schema if not exists {INTERNAL_SCHEMA}"))
    if version_table_schema(connection) == SCHEMA:
        connection.execute(sa.text(f"alter table {SCHEMA}.alembic_version set schema {INTERNAL_SCHEMA}"))
    context.configure(
        connection=connection,
        version_table_schema=INTERNAL_SCHEMA,
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
