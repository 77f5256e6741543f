"""The job's tables move to `segmentation_internal`; `segmentation` keeps only the views.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

BI tools list every relation of the schema they browse: with the tables beside the views,
an analyst could build a dataset on `runs` or `customers` that then fails with "permission
denied". Every table (with its partitions, indexes, constraints and identity sequences)
moves by `ALTER TABLE ... SET SCHEMA`; the views keep working unchanged, since PostgreSQL
stores them with the tables' oids, and now read `segmentation_internal.<table>` (VIEW_SQL
below). The reader role gets no USAGE on the new schema: it selects the views, whose owner
reads the tables.

Alembic's version table is not moved here: migrations/env.py keeps it in
`segmentation_internal` at every revision, so that schema stays after a downgrade.
"""

import re

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_SCHEMA = "segmentation"
NEW_SCHEMA = "segmentation_internal"
TABLES = (
    "customers", "runs", "import_batches", "import_rejects", "orders", "datasets", "segment_profiles",
    "segment_features", "customer_segments", "k_evaluations", "view_versions", "run_lock",
)


def _move_tables(source: str, target: str) -> None:
    """Move every table of `source` (partitions too, each on its own) but the version table to `target`."""
    op.execute(
        f"""
        do $$
        declare
            found record;
        begin
            for found in
                select relname from pg_class
                where relnamespace = '{source}'::regnamespace and relkind in ('r', 'p')
                and relname <> 'alembic_version'
                order by relname
            loop
                execute format('alter table %I.%I set schema %I', '{source}', found.relname, '{target}');
            end loop;
        end
        $$;
        """
    )


def upgrade() -> None:
    op.execute(f"create schema if not exists {NEW_SCHEMA}")
    op.execute(f"revoke all on schema {NEW_SCHEMA} from public")
    _move_tables(OLD_SCHEMA, NEW_SCHEMA)
    op.execute(
        f"comment on schema {NEW_SCHEMA} is"
        " 'Tables of the segmentation job; BI tools read the views in schema segmentation.'"
    )
    op.execute(
        f"comment on schema {OLD_SCHEMA} is"
        " 'Views for BI tools and analysts (role segmentation_reader); the tables are in segmentation_internal.'"
    )


def downgrade() -> None:
    _move_tables(NEW_SCHEMA, OLD_SCHEMA)
    op.execute(f"comment on schema {OLD_SCHEMA} is null")
    op.execute(f"comment on schema {NEW_SCHEMA} is null")


def _earlier_view_sql() -> dict[str, str]:
    """Each view's SQL as the newest of migrations 0001-0006 that (re)defines it has it."""
    import importlib.util
    from pathlib import Path

    definitions: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("000[1-6]_*.py")):
        spec = importlib.util.spec_from_file_location(f"segmentation_migration_{path.name[:4]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        definitions.update(getattr(module, "VIEW_SQL", {}))
    return definitions


_TABLE_REFERENCE = re.compile(rf"\b{OLD_SCHEMA}\.({'|'.join(TABLES)})\b")

#: The views as they read after the move (not re-created: they follow their tables by oid).
VIEW_SQL = {
    name: _TABLE_REFERENCE.sub(rf"{NEW_SCHEMA}.\1", statement) for name, statement in _earlier_view_sql().items()
}
