"""The views of one segmentation, generated from its declaration.

Every segmentation has a schema of its own with the same views: `segmentation` for the
`default` one (the names dashboards have used from the start), `segments_NAME` for each other
NAME. The views that show history (`run_history`, `segment_profile_history`,
`segment_transitions_history`) carry a `segmentation` column; in the `segmentation` schema they
show every segmentation (`cross`), in `segments_NAME` only NAME's rows.

The views are the one part of the schema that is code, not migrations: `ensure_views` (re)creates
them from the declaration, with comments and the reader's grant, and only the views whose SQL
changed (their hash is kept in `view_versions`). A publishing run does it inside its publish
transaction (under the run lock); every upgrade that reaches the head revision does it for every
segmentation, from its stored declaration (`ensure_every`, called by migrations/env.py), so no
migration builds a view from code that may read columns a later migration adds. A migration that
changes a column these views read drops them first (`drop_every`). Their columns follow the declaration; all of a segmentation's views give
`customer_id` the same type (bigint for whole ids, text otherwise), so they join.

Identifiers from the declaration are quoted with `psycopg.sql.Identifier`; labels, units and
names go in as `psycopg.sql.Literal`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus, view_columns
from segmentation.dataset import Dataset, from_description
from segmentation.publish.views.customers import (
    customer_history_sql,
    customer_rfm_sql,
    customer_segments_sql,
    movers_sql,
)
from segmentation.publish.views.parts import (
    DEFAULT_NAME,
    DEFAULT_SCHEMA,
    READER_ROLE,
    SCHEMA_PREFIX,
    Parts,
    Target,
    customer_key,
    schema_name,
)
from segmentation.publish.views.profiles import (
    profile_history_sql,
    segment_features_sql,
    segment_profiles_sql,
)
from segmentation.publish.views.runs import (
    run_history_sql,
    transitions_history_sql,
    transitions_sql,
)

__all__ = [
    "CROSS_VIEWS", "DEFAULT_NAME", "DEFAULT_SCHEMA", "READER_ROLE", "SCHEMA_PREFIX", "VIEWS", "Target",
    "customer_key", "drop_every", "drop_views", "ensure_every", "ensure_schema", "ensure_views", "reference_copies", "schema_name",
    "view_statements",
]

#: each view: what it shows (its COMMENT) and how it is made
VIEWS: dict[str, tuple[str, Callable[[Parts], tuple[sql.Composed, dict[str, str]]]]] = {
    "current_customer_segments": (
        "Grain: one row per customer of the latest published run. Segment and declared attributes of each customer.",
        customer_segments_sql,
    ),
    "current_segment_profiles": (
        "Grain: one row per segment of the latest published run. Size, averages and shares, name and recommendation.",
        segment_profiles_sql,
    ),
    "current_segment_features": (
        "Grain: one row per segment x feature (x category for categories) of the latest published run."
        " Long format for any feature set: pivot it in the BI tool.",
        segment_features_sql,
    ),
    "segment_profile_history": (
        "Grain: one row per segment of every published run, oldest first. Segment sizes and profiles over time.",
        profile_history_sql,
    ),
    "run_history": (
        "Grain: one row per segmentation run, newest first, including failed and held runs.",
        run_history_sql,
    ),
    "segment_transitions": (
        "Grain: one row per (previous segment, current segment) pair between the two latest published runs."
        " Customers moved between segments; chart it as a Sankey from from_label to to_label.",
        transitions_sql,
    ),
    "segment_transitions_history": (
        "Grain: one row per (segment, segment) pair of every two consecutive published runs. Customers moved between"
        " segments over time; filter on to_run_id or to_published_date.",
        transitions_history_sql,
    ),
    "customer_segment_history": (
        "Grain: one row per customer per stretch in one segment (valid_from, valid_to; the current stretch has"
        " valid_to null). One customer's segments over time: filter on customer_id.",
        customer_history_sql,
    ),
    "segment_movers": (
        "Grain: one row per customer whose segment changed in the latest published run, with the segment before and"
        " after and the customer's current values.",
        movers_sql,
    ),
    "customer_rfm": (
        "Grain: one row per customer with at least one purchase before as_of. Recency, frequency and monetary value"
        " (RFM) from the segmentation's orders, as of the session setting segmentation.as_of when set"
        " (set segmentation.as_of = '2024-01-01'), else the day after the latest order.",
        customer_rfm_sql,
    ),
}
#: the views whose rows in the `segmentation` schema cover every segmentation
CROSS_VIEWS = ("run_history", "segment_profile_history", "segment_transitions_history")


def view_statements(target: Target, dataset: Dataset) -> dict[str, tuple[sql.Composed, dict[str, str]]]:
    """Each view's CREATE statement and column comments for `target` under `dataset`.

    ValueError (one line) when the declaration's view columns would clash (`view_columns.check`;
    settings refuse such a declaration before any work).
    """
    view_columns.check(dataset)
    parts = Parts(target, dataset)
    return {name: builder(parts) for name, (_, builder) in VIEWS.items()}


def ensure_schema(connection: Connection, target: Target) -> None:
    """The segmentation's schema, readable by the reader role (created for a new segmentation)."""
    raw = connection.connection.driver_connection
    schema = sql.Identifier(target.schema)
    raw.execute(sql.SQL("create schema if not exists {}").format(schema))
    raw.execute(sql.SQL("grant usage on schema {} to {}").format(schema, sql.Identifier(READER_ROLE)))
    if not target.cross:
        raw.execute(sql.SQL("comment on schema {} is {}").format(schema, sql.Literal(
            f"Views of the segmentation {target.name} for BI tools and analysts (role {READER_ROLE});"
            " the tables are in segmentation_internal."
        )))


def ensure_views(connection: Connection, target: Target, dataset: Dataset) -> list[str]:
    """(Re)create the views of `target` whose SQL changed; return their names.

    Runs in the caller's (publish) transaction, so a BI user sees the old views or the new
    ones, never a half-changed set. Comments and the reader's grant come back with each view.
    """
    ensure_schema(connection, target)
    raw = connection.connection.driver_connection
    recreated = []
    for name, (statement, comments) in view_statements(target, dataset).items():
        text = statement.as_string(raw)
        signature = hashlib.sha256(text.encode()).hexdigest()
        stored = raw.execute(
            "select signature from segmentation_internal.view_versions where schema_name = %s and view_name = %s",
            (target.schema, name),
        ).fetchone()
        if stored is not None and stored[0] == signature:
            continue
        view = sql.Identifier(target.schema, name)
        raw.execute(sql.SQL("drop view if exists {}").format(view))
        raw.execute(statement)
        raw.execute(sql.SQL("comment on view {} is {}").format(view, sql.Literal(VIEWS[name][0])))
        for column, comment in comments.items():
            raw.execute(
                sql.SQL("comment on column {} is {}").format(sql.Identifier(target.schema, name, column), sql.Literal(comment))
            )
        raw.execute(sql.SQL("grant select on {} to {}").format(view, sql.Identifier(READER_ROLE)))
        raw.execute(
            "insert into segmentation_internal.view_versions (schema_name, view_name, signature) values (%s, %s, %s)"
            " on conflict (schema_name, view_name) do update set signature = excluded.signature, updated_at = excluded.updated_at",
            (target.schema, name, signature),
        )
        recreated.append(name)
    citus.grant_reader(connection)  # on Citus the reader reads the tables' shards itself
    return recreated


def drop_views(connection: Connection, target: Target) -> None:
    """Drop the views of `target` (and its schema, unless it is the `segmentation` schema)."""
    raw = connection.connection.driver_connection
    for name in VIEWS:
        raw.execute(sql.SQL("drop view if exists {}").format(sql.Identifier(target.schema, name)))
    raw.execute("delete from segmentation_internal.view_versions where schema_name = %s", (target.schema,))
    if not target.cross:
        raw.execute(sql.SQL("drop schema if exists {}").format(sql.Identifier(target.schema)))


def _segmentations(connection: Connection) -> list[tuple[Target, dict | None]]:
    rows = connection.exec_driver_sql(
        "select segmentation_id, name, declaration from segmentation_internal.segmentations order by segmentation_id"
    ).all()
    return [(Target(row.segmentation_id, row.name), row.declaration) for row in rows]


def ensure_every(connection: Connection) -> list[str]:
    """`ensure_views` for every segmentation, each under its stored declaration (the mall's when
    none is stored); return the views recreated, as schema.view."""
    recreated = []
    for target, declaration in _segmentations(connection):
        dataset = from_description((declaration or {}).get("dataset"))
        recreated += [f"{target.schema}.{name}" for name in ensure_views(connection, target, dataset)]
    return recreated


def drop_every(connection: Connection) -> None:
    """Drop every segmentation's views (schemas stay); the next upgrade to head recreates them."""
    raw = connection.connection.driver_connection
    for target, _ in _segmentations(connection):
        for name in VIEWS:
            raw.execute(sql.SQL("drop view if exists {}").format(sql.Identifier(target.schema, name)))
    raw.execute("delete from segmentation_internal.view_versions")


def reference_copies(dataset: Dataset) -> dict[str, str]:
    """The SQL of the `default` segmentation's views under `dataset`, as `sql/views/` keeps it for
    readers (regenerate with `python -m segmentation.publish.views`)."""
    header = (
        "-- Reference copy of segmentation.{name} for the default segmentation under the mall's declaration,\n"
        "-- generated by segmentation/publish/views/ (the job creates each segmentation's views from its own\n"
        "-- declaration, in schema segmentation or segments_NAME). Editing this file changes nothing.\n"
    )
    return {
        name: header.format(name=name) + statement.as_string(None) + ";\n"
        for name, (statement, _) in view_statements(Target(1, DEFAULT_NAME), dataset).items()
    }
