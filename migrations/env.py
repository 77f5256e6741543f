"""Alembic environment: views in `segmentation`, tables and the version table in `segmentation_internal`.

The version table lives in `segmentation_internal` at every revision, so the schema BI
tools browse never lists it. Databases migrated by earlier versions of the job have it in
`segmentation`: it is moved, in the migration's transaction, before Alembic reads it.

Views are code (segmentation.publish.views), not migrations: after an upgrade that reaches the
head revision, every segmentation's views are (re)created from its stored declaration in the
same transaction, where their SQL changed. Below head (after a downgrade) a migration that
dropped them leaves them to the job of that revision, which recreates them on its next run.

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
        if set(context.get_context().get_current_heads()) == set(context.get_head_revisions()):
            from segmentation import citus
            from segmentation.publish import views

            citus.ensure(connection)  # a database given the citus extension after 0012 is distributed now
            views.ensure_every(connection)


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
