"""What a later import needs to recognise a file as the start of its own, and a change counter per table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A nightly export is usually yesterday's file with lines appended. To read only the appended
lines, an import must know that the table still holds what the last import left
(`table_versions`: a statement-level trigger on `customers` and `orders` counts every
statement that writes them, whoever runs it) and what that import read (new columns of
`import_batches`: the file's length, what it was read under, the table's version after it,
whether the table is covered by the file, and the reject reasons' counts).
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = ("customers", "orders")


def upgrade() -> None:
    op.execute(
        """
        create table segmentation_internal.table_versions (
            table_name text primary key,
            version bigint not null default 0
        );
        comment on table segmentation_internal.table_versions is
            'One row per table an import may skip work on: version counts the statements that wrote the table.';
        insert into segmentation_internal.table_versions (table_name) values ('customers'), ('orders');

        create function segmentation_internal.count_table_change() returns trigger
        language plpgsql as $$
        begin
            update segmentation_internal.table_versions set version = version + 1 where table_name = tg_table_name;
            return null;
        end
        $$;

        alter table segmentation_internal.import_batches
            add column source_bytes bigint,
            add column reading_key text,
            add column table_version bigint,
            add column covers_table boolean,
            add column reject_patterns jsonb;
        comment on column segmentation_internal.import_batches.source_bytes is
            'Bytes of the file (null when its end cannot start a longer file: an open quote, say); a later file that starts with the same bytes (source_sha256) re-reads only its tail.';
        comment on column segmentation_internal.import_batches.reading_key is
            'Hash of what the lines were read under (declaration, column map or [orders], reader version).';
        comment on column segmentation_internal.import_batches.table_version is
            'table_versions.version of the table this batch wrote (customers or orders) when it finished.';
        comment on column segmentation_internal.import_batches.covers_table is
            'customers: every active customer has a line in the file; orders: the table holds exactly the file''s valid lines.';
        comment on column segmentation_internal.import_batches.reject_patterns is
            'Rejected lines per reason (values replaced by an ellipsis).';
        """
    )
    for table in TABLES:
        op.execute(
            f"create trigger {table}_changed after insert or update or delete or truncate"
            f" on segmentation_internal.{table} for each statement"
            " execute function segmentation_internal.count_table_change()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"drop trigger {table}_changed on segmentation_internal.{table}")
    op.execute(
        """
        alter table segmentation_internal.import_batches
            drop column source_bytes, drop column reading_key, drop column table_version,
            drop column covers_table, drop column reject_patterns;
        drop function segmentation_internal.count_table_change();
        drop table segmentation_internal.table_versions;
        """
    )
