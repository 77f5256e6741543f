"""Migrations up and down on a real server, and the documented comments on every view."""

import re
from pathlib import Path

import sqlalchemy as sa

from segmentation import db

HEAD = "0009"

SEGMENT_COLUMNS = ("segment_label", "segment_order", "segment_color")
TRANSITION_COLUMNS = {
    "from_run_id", "to_run_id", "from_segment_id", "to_segment_id", "customer_count", "from_label", "to_label",
    "from_segment_name", "to_segment_name", "share_of_from_segment_pct", "to_published_date",
}
VIEWS = {
    "current_customer_segments": {
        "customer_id", "segment_id", "segment_name", "gender", "age", "annual_income_k", "spending_score",
        "distance_to_centroid", "run_id", "published_at", *SEGMENT_COLUMNS, "published_date",
    },
    "current_segment_profiles": {
        "segment_id", "segment_name", "customer_count", "customer_share", "avg_age", "avg_annual_income_k",
        "avg_spending_score", "female_share", "recommendation", "run_id", *SEGMENT_COLUMNS, "published_date",
        "customer_share_pct", "female_share_pct",
    },
    "run_history": {
        "run_id", "started_at", "finished_at", "status", "k", "silhouette", "n_customers", "published_at",
        "published_date",
    },
    "segment_transitions": TRANSITION_COLUMNS,
    "segment_transitions_history": TRANSITION_COLUMNS,
    "segment_profile_history": {
        "run_id", "published_at", "segment_id", "segment_name", "customer_count", *SEGMENT_COLUMNS, "published_date",
        "is_latest_of_day", "customer_share_pct",
    },
    "current_segment_features": {
        "segment_id", "segment_name", "feature", "label", "unit", "category", "mean", "median", "index", "level",
        *SEGMENT_COLUMNS, "published_date", "share_pct",
    },
    "customer_rfm": {
        "customer_id", "recency_days", "frequency", "monetary", "average_order_value", "tenure_days", "r_score",
        "f_score", "m_score",
    },
}
TABLES = {"customers", "import_batches", "import_rejects", "runs", "k_evaluations", "segment_profiles",
          "customer_segments", "datasets", "segment_features", "view_versions", "run_lock", "orders"}


def relations(engine, kind, schema="segmentation"):
    """Names of the relations of `kind` ("v" views, "r" tables and partitioned tables, "p") in `schema`."""
    with engine.connect() as connection:
        return set(
            connection.execute(
                sa.text(
                    "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                    " where n.nspname = :schema and c.relkind = any(:kinds) and not c.relispartition"
                ),
                {"kinds": list({"r": "rp"}.get(kind, kind)), "schema": schema},
            ).scalars()
        )


def every_relation(engine, schema):
    """(name, relkind) of every relation in `schema`, partitions, indexes and sequences included."""
    with engine.connect() as connection:
        return set(connection.execute(sa.text(
            "select relname, relkind from pg_class where relnamespace = cast(:schema as regnamespace)"
        ), {"schema": schema}).all())


def test_upgrade_creates_the_contract_and_downgrade_removes_it(empty_database_url):
    engine = db.make_engine(empty_database_url)
    db.upgrade(engine)
    assert relations(engine, "v") == set(VIEWS)
    assert {kind for _, kind in every_relation(engine, "segmentation")} == {"v"}  # nothing but the views
    assert TABLES | {"alembic_version"} <= relations(engine, "r", "segmentation_internal")
    db.downgrade(engine, "base")
    assert every_relation(engine, "segmentation") == set()
    assert relations(engine, "r", "segmentation_internal") == {"alembic_version"}
    db.upgrade(engine)  # and up again
    assert relations(engine, "v") == set(VIEWS)
    engine.dispose()


def test_moving_the_tables_down_and_up_keeps_rows_partitions_sequences_and_working_views(engine, customers_csv):
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    settings = load_settings(database_url="postgresql://unused@h/x", write_report=False)
    run_once(engine, settings, customers_csv)
    run_once(engine, settings, customers_csv)
    version_table = {("alembic_version", "r"), ("alembic_version_pkc", "i")}
    internal = every_relation(engine, "segmentation_internal") - version_table
    assert ("customer_segments_r1", "r") in internal and ("runs_run_id_seq", "S") in internal
    counts = {
        "current_customer_segments": "select count(*), count(distinct run_id) from segmentation.current_customer_segments",
        "segment_profile_history": "select sum(customer_count), count(distinct run_id) from segmentation.segment_profile_history",
        "segment_transitions": "select sum(customer_count), max(to_run_id) from segmentation.segment_transitions",
    }
    with engine.connect() as connection:
        before = {view: tuple(connection.execute(sa.text(query)).one()) for view, query in counts.items()}
    db.downgrade(engine, "0006")
    views_of_0006 = set(VIEWS) - {"segment_transitions_history"}
    after_0006 = {("table_versions", "r"), ("table_versions_pkey", "i")}  # migration 0009
    assert every_relation(engine, "segmentation") == internal - after_0006 | {(view, "v") for view in views_of_0006}
    assert every_relation(engine, "segmentation_internal") == version_table
    db.upgrade(engine)
    assert every_relation(engine, "segmentation_internal") - version_table == internal
    with engine.connect() as connection:
        after = {view: tuple(connection.execute(sa.text(query)).one()) for view, query in counts.items()}
    assert after == before and before["current_customer_segments"] == (300, 1)
    third = run_once(engine, settings, customers_csv)  # identity sequences moved with their tables
    assert third.status == "published" and third.run_id == 3


def test_a_database_whose_version_table_is_still_in_segmentation_is_upgraded_by_a_run(empty_database_url, customers_csv):
    """Databases migrated by earlier versions of the job keep alembic_version (and run_lock) in `segmentation`:
    the run migrates under the advisory lock, then takes the moved lock table."""
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    engine = db.make_engine(empty_database_url)
    db.upgrade(engine, "0006")
    with engine.begin() as connection:
        connection.exec_driver_sql("alter table segmentation_internal.alembic_version set schema segmentation")
        connection.exec_driver_sql("drop schema segmentation_internal")
        assert db.current_revision(connection) == "0006"
    outcome = run_once(engine, load_settings(database_url="postgresql://unused@h/x", write_report=False), customers_csv)
    assert outcome.status == "published"
    with engine.connect() as connection:
        assert db.version_table_schema(connection) == "segmentation_internal"
        assert db.current_revision(connection) == HEAD
    assert {kind for _, kind in every_relation(engine, "segmentation")} == {"v"}
    engine.dispose()


def test_the_reader_may_use_the_views_schema_only(engine):
    with engine.connect() as connection:
        usage = dict(connection.execute(sa.text(
            "select nspname, has_schema_privilege('segmentation_reader', nspname, 'USAGE') from pg_namespace"
            " where nspname in ('segmentation', 'segmentation_internal')"
        )).all())
        selectable = set(connection.execute(sa.text(
            "select relname from pg_class where relnamespace = cast('segmentation' as regnamespace)"
            " and has_table_privilege('segmentation_reader', oid, 'SELECT')"
        )).scalars())
    assert usage == {"segmentation": True, "segmentation_internal": False}
    assert selectable == set(VIEWS) == {name for name, _ in every_relation(engine, "segmentation")}


def test_each_migration_downgrades_to_the_one_before_with_its_comments(empty_database_url):
    engine = db.make_engine(empty_database_url)
    db.upgrade(engine)
    db.downgrade(engine, "0001")
    assert relations(engine, "v") == set(VIEWS) - {
        "segment_transitions", "segment_profile_history", "current_segment_features", "customer_rfm",
        "segment_transitions_history"}
    with engine.connect() as connection:
        comment = connection.execute(sa.text(
            "select col_description(cast('segmentation.current_segment_profiles' as regclass), 1)")).scalar()
        assert comment and "Segment number" in comment
    db.upgrade(engine)
    assert relations(engine, "v") == set(VIEWS)
    engine.dispose()


def test_every_view_and_view_column_has_a_comment(engine):
    with engine.connect() as connection:
        for view, required in VIEWS.items():
            view_comment = connection.execute(
                sa.text("select obj_description(cast(:name as regclass), 'pg_class')"),
                {"name": f"segmentation.{view}"},
            ).scalar()
            assert view_comment and view_comment.lower().startswith("grain:")
            columns = dict(
                connection.execute(
                    sa.text(
                        "select a.attname, col_description(a.attrelid, a.attnum) from pg_attribute a"
                        " where a.attrelid = cast(:name as regclass) and a.attnum > 0 and not a.attisdropped"
                    ),
                    {"name": f"segmentation.{view}"},
                ).all()
            )
            assert required <= set(columns), f"{view} lacks {required - set(columns)}"
            assert all(columns.values()), f"{view} has columns without a comment"


def latest_view_definitions() -> dict[str, str]:
    """Each view's SQL as the newest migration that (re)defines it has it."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(db.alembic_config())
    definitions: dict[str, str] = {}
    for revision in reversed(list(scripts.walk_revisions())):  # oldest first
        definitions.update(getattr(revision.module, "VIEW_SQL", {}))
    return definitions


def _normalise(sql: str) -> str:
    sql = re.sub(r"--[^\n]*", "", sql)
    return " ".join(sql.replace(";", " ").split()).lower()


def test_sql_reference_copies_match_the_views_in_the_migrations():
    folder = Path(__file__).resolve().parents[2] / "sql" / "views"
    definitions = latest_view_definitions()
    assert set(definitions) == set(VIEWS)
    for view, sql in definitions.items():
        reference = (folder / f"{view}.sql").read_text()
        assert _normalise(reference) == _normalise(sql), f"sql/views/{view}.sql differs from the migrations"


def test_partitioning_keeps_every_customer_row_down_and_up_again(engine, customers_csv):
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    run_once(engine, load_settings(database_url="postgresql://unused@h/x"), customers_csv)
    run_once(engine, load_settings(database_url="postgresql://unused@h/x"), customers_csv)
    count = "select run_id, count(*) from {}.customer_segments group by 1 order by 1"
    with engine.connect() as connection:
        before = connection.execute(sa.text(count.format("segmentation_internal"))).all()
    db.downgrade(engine, "0002")
    assert relations(engine, "p") == set()  # a plain table again, back in segmentation
    with engine.connect() as connection:
        assert connection.execute(sa.text(count.format("segmentation"))).all() == before
    db.upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(sa.text(count.format("segmentation_internal"))).all() == before
        partitions = connection.execute(sa.text(
            "select count(*) from pg_inherits where inhparent = cast('segmentation_internal.customer_segments' as regclass)"
        )).scalar()
    assert partitions == 2
