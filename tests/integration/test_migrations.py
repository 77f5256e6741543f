"""Migrations up and down on a real server, and the documented comments on every view."""

import re
from pathlib import Path

import sqlalchemy as sa

from segmentation import db

VIEWS = {
    "current_customer_segments": {
        "customer_id", "segment_id", "segment_name", "gender", "age", "annual_income_k", "spending_score",
        "distance_to_centroid", "run_id", "published_at",
    },
    "current_segment_profiles": {
        "segment_id", "segment_name", "customer_count", "customer_share", "avg_age", "avg_annual_income_k",
        "avg_spending_score", "female_share", "recommendation", "run_id",
    },
    "run_history": {"run_id", "started_at", "finished_at", "status", "k", "silhouette", "n_customers", "published_at"},
    "segment_transitions": {"from_run_id", "to_run_id", "from_segment_id", "to_segment_id", "customer_count"},
    "segment_profile_history": {"run_id", "published_at", "segment_id", "segment_name", "customer_count"},
    "current_segment_features": {
        "segment_id", "segment_name", "feature", "label", "unit", "category", "mean", "median", "index", "level",
    },
    "customer_rfm": {
        "customer_id", "recency_days", "frequency", "monetary", "average_order_value", "tenure_days", "r_score",
        "f_score", "m_score",
    },
}
TABLES = {"customers", "import_batches", "import_rejects", "runs", "k_evaluations", "segment_profiles",
          "customer_segments", "datasets", "segment_features", "view_versions", "run_lock", "orders"}


def relations(engine, kind):
    with engine.connect() as connection:
        return set(
            connection.execute(
                sa.text(
                    "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                    " where n.nspname = 'segmentation' and c.relkind = any(:kinds) and not c.relispartition"
                ),
                {"kinds": list({"r": "rp"}.get(kind, kind))},
            ).scalars()
        )


def test_upgrade_creates_the_contract_and_downgrade_removes_it(empty_database_url):
    engine = db.make_engine(empty_database_url)
    db.upgrade(engine)
    assert relations(engine, "v") == set(VIEWS)
    assert TABLES <= relations(engine, "r")
    db.downgrade(engine, "base")
    assert relations(engine, "v") == set()
    assert relations(engine, "r") <= {"alembic_version"}
    db.upgrade(engine)  # and up again
    assert relations(engine, "v") == set(VIEWS)
    engine.dispose()


def test_each_migration_downgrades_to_the_one_before_with_its_comments(empty_database_url):
    engine = db.make_engine(empty_database_url)
    db.upgrade(engine)
    db.downgrade(engine, "0001")
    assert relations(engine, "v") == set(VIEWS) - {
        "segment_transitions", "segment_profile_history", "current_segment_features", "customer_rfm"}
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
    count = "select run_id, count(*) from segmentation.customer_segments group by 1 order by 1"
    with engine.connect() as connection:
        before = connection.execute(sa.text(count)).all()
    db.downgrade(engine, "0002")
    assert relations(engine, "p") == set()  # a plain table again
    with engine.connect() as connection:
        assert connection.execute(sa.text(count)).all() == before
    db.upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(sa.text(count)).all() == before
        partitions = connection.execute(sa.text(
            "select count(*) from pg_inherits where inhparent = cast('segmentation.customer_segments' as regclass)"
        )).scalar()
    assert partitions == 2
