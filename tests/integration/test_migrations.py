"""Migrations up and down on a real server, and the documented comments on every view."""

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from segmentation import db
from tests.conftest import published_assignment

HEAD = "0012"

SEGMENT_COLUMNS = ("segment_label", "segment_order", "segment_color")
TRANSITION_COLUMNS = {
    "segmentation", "from_run_id", "to_run_id", "from_segment_id", "to_segment_id", "customer_count", "from_label", "to_label",
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
        "segmentation", "run_id", "started_at", "finished_at", "status", "k", "silhouette", "n_customers",
        "published_at", "published_date", "model", "n_reassigned", "n_moved",
    },
    "segment_transitions": TRANSITION_COLUMNS,
    "segment_transitions_history": TRANSITION_COLUMNS,
    "segment_profile_history": {
        "segmentation", "run_id", "published_at", "segment_id", "segment_name", "customer_count", *SEGMENT_COLUMNS, "published_date",
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
    "customer_segment_history": {
        "customer_id", "segment_id", "segment_name", "valid_from", "valid_to", "from_run_id", "to_run_id",
        "next_segment_id", "is_current",
    },
    "segment_movers": {
        "customer_id", "from_segment_id", "from_segment_name", "to_segment_id", "to_segment_name", "gender", "age",
        "annual_income_k", "spending_score", "run_id", "published_at",
    },
    "segmentations": {
        "segmentation", "schema_name", "version", "features", "input", "last_published_run_id", "last_published_at",
        "customer_count",
    },
}
TABLES = {"customers", "import_batches", "import_rejects", "runs", "k_evaluations", "segment_profiles",
          "current_segments", "segment_stretches", "segment_transitions", "segmentations", "run_samples", "datasets",
          "segment_features", "view_versions", "run_lock", "orders", "table_versions"}


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


def test_moving_the_tables_down_and_up_keeps_the_current_segments_sequences_and_working_views(engine, customers_csv):
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    settings = load_settings(database_url="postgresql://unused@h/x", write_report=False)
    run_once(engine, settings, customers_csv)
    run_once(engine, settings, customers_csv)
    internal = {name for name, _ in every_relation(engine, "segmentation_internal")}
    assert {"current_segments_g1", "customers_s1", "runs_run_id_seq"} <= internal
    counts = {
        "current_customer_segments": "select count(*), count(distinct run_id), count(distinct segment_id)"
        " from segmentation.current_customer_segments",
        "segment_profile_history": "select sum(customer_count), count(distinct run_id) from segmentation.segment_profile_history",
    }
    with engine.connect() as connection:
        before = {view: tuple(connection.execute(sa.text(query)).one()) for view, query in counts.items()}
    db.downgrade(engine, "0006")
    views_of_0006 = set(VIEWS) - {"segment_transitions_history", "customer_segment_history", "segment_movers",
                                  "segmentations"}
    assert {name for name, kind in every_relation(engine, "segmentation") if kind == "v"} == views_of_0006
    assert ("customer_segments_r2", "r") in every_relation(engine, "segmentation")  # the latest run's rows, back
    db.upgrade(engine)
    with engine.connect() as connection:
        after = {view: tuple(connection.execute(sa.text(query)).one()) for view, query in counts.items()}
    assert after == before and before["current_customer_segments"][:2] == (300, 1)
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
        "segment_transitions_history", "customer_segment_history", "segment_movers", "segmentations"}
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


def test_sql_reference_copies_match_the_views_the_job_creates():
    from segmentation.dataset import MALL
    from segmentation.publish import views

    folder = Path(__file__).resolve().parents[2] / "sql" / "views"
    copies = views.reference_copies(MALL)
    assert set(copies) | {"segmentations"} == set(VIEWS) == {path.stem for path in folder.glob("*.sql")}
    for view, text in copies.items():
        assert (folder / f"{view}.sql").read_text() == text, f"sql/views/{view}.sql is stale: python -m segmentation.publish.views"
    from alembic.script import ScriptDirectory

    tenth = ScriptDirectory.from_config(db.alembic_config()).get_revision("0010").module
    assert _normalise((folder / "segmentations.sql").read_text()) == _normalise(tenth.SEGMENTATIONS_VIEW)


def _normalise(sql: str) -> str:
    sql = re.sub(r"--[^\n]*", "", sql)
    return " ".join(sql.replace(";", " ").split()).lower()


def test_a_downgrade_below_0002_keeps_the_latest_published_run_of_every_customer(engine, customers_csv):
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    run_once(engine, load_settings(database_url="postgresql://unused@h/x"), customers_csv)
    second = run_once(engine, load_settings(database_url="postgresql://unused@h/x", model_tolerance=0), customers_csv)
    count = "select run_id, count(*) from {}.customer_segments group by 1 order by 1"
    db.downgrade(engine, "0002")
    assert relations(engine, "p") == set()  # a plain table again, back in segmentation
    with engine.connect() as connection:
        assert connection.execute(sa.text(count.format("segmentation"))).all() == [(second.run_id, 300)]
    db.upgrade(engine)
    assert len(published_assignment(engine, columns="customer_id")) == 300


# --- a database of 0009 with data, carried over --------------------------------------------------------

#: customer -> segment in runs 1, 2 and 3 (None: not in that run)
PATHS = {"1": (1, 1, 1), "2": (1, 2, 2), "3": (2, 2, None), "4": (None, 1, 1), "5": (2, 1, 2), "6": (1, None, 1)}


@pytest.fixture
def database_of_0009(empty_database_url):
    """A database at revision 0009 as the job left it: three published runs of the mall's declaration
    with their per-run partitions, the customers of `PATHS` moving between segments."""
    from segmentation.dataset import MALL

    engine = db.make_engine(empty_database_url)
    db.upgrade(engine, "0009")
    described = json.dumps(MALL.describe())
    with engine.begin() as connection:
        run = lambda statement, **parameters: connection.execute(sa.text(statement), parameters)  # noqa: E731
        run("insert into segmentation_internal.datasets (fingerprint, declaration) values (:f, cast(:d as jsonb))"
            " on conflict (fingerprint) do nothing", f=MALL.fingerprint(), d=described)
        dataset_id = run("select dataset_id from segmentation_internal.datasets where fingerprint = :f",
                         f=MALL.fingerprint()).scalar_one()
        run("insert into segmentation_internal.import_batches (source_name, export_mode, status) values ('c.csv', 'full', 'succeeded')")
        for customer in PATHS:
            run("insert into segmentation_internal.customers (customer_id, attributes, dataset_id, first_batch_id,"
                " last_batch_id) values (:c, cast(:a as text[]), :d, 1, 1)", c=customer, a="{Female,30,50,50}",
                d=dataset_id)
        for run_id in (1, 2, 3):
            run("insert into segmentation_internal.runs (status, started_at, published_at, k, features, dataset,"
                " dataset_fingerprint, n_customers) values ('published', now(), clock_timestamp(), 2,"
                " '{annual_income_k,spending_score}', cast(:d as jsonb), :f, 5)", d=described, f=MALL.fingerprint())
            for segment in (1, 2):
                run("insert into segmentation_internal.segment_profiles (run_id, segment_id, segment_name, customer_count,"
                    " customer_share, recommendation, centroid) values (:r, :s, :n, 2, 0.4, 'x', '{}')",
                    r=run_id, s=segment, n=f"Segment {segment} of run {run_id}")
            run(f"create table segmentation_internal.customer_segments_r{run_id} partition of"
                f" segmentation_internal.customer_segments for values in ({run_id})")
            for customer, path in PATHS.items():
                if path[run_id - 1] is not None:
                    run("insert into segmentation_internal.customer_segments (run_id, customer_id, segment_id,"
                        " distance_to_centroid, attributes) values (:r, :c, :s, 0.5, cast(:a as text[]))",
                        r=run_id, c=customer, s=path[run_id - 1], a="{Female,30,50,50}")
    yield engine
    engine.dispose()


def test_the_upgrade_makes_the_runs_the_default_segmentations_and_rebuilds_each_customers_history(database_of_0009):
    engine = database_of_0009
    db.upgrade(engine)
    with engine.connect() as connection:
        query = lambda statement: connection.execute(sa.text(statement)).all()  # noqa: E731
        assert query("select segmentation, input, last_published_run_id, customer_count from segmentation.segmentations") == [
            ("default", "customer export", 3, 5)]
        assert query("select distinct segmentation from segmentation.run_history") == [("default",)]
        current = query("select customer_id, segment_id, from_run_id from segmentation.customer_segment_history"
                        " where is_current order by 1")
        assert current == [(1, 1, 1), (2, 2, 2), (4, 1, 2), (5, 2, 3), (6, 1, 3)]
        closed = query("select customer_id, segment_id, from_run_id, to_run_id, next_segment_id"
                       " from segmentation.customer_segment_history where not is_current order by 1, 3")
        assert closed == [(2, 1, 1, 2, 2), (3, 2, 1, 3, None), (5, 2, 1, 2, 1), (5, 1, 2, 3, 2), (6, 1, 1, 2, None)]
        assert query("select customer_id, from_segment_id, to_segment_id from segmentation.segment_movers order by 1") == [
            (5, 1, 2)]
        transitions = query("select to_run_id, from_segment_id, to_segment_id, customer_count"
                            " from segmentation.segment_transitions_history order by 1, 2 nulls first, 3 nulls first")
        assert transitions == [
            (2, None, 1, 1), (2, 1, None, 1), (2, 1, 1, 1), (2, 1, 2, 1), (2, 2, 1, 1), (2, 2, 2, 1),
            (3, None, 1, 1), (3, 1, 1, 2), (3, 1, 2, 1), (3, 2, None, 1), (3, 2, 2, 1),
        ]
        assert query("select count(*) from segmentation.current_customer_segments") == [(5,)]
        assert query("select to_regclass('segmentation_internal.customer_segments')") == [(None,)]


def test_the_next_run_after_the_upgrade_goes_on_from_the_rebuilt_history(database_of_0009, customers_csv):
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    engine = database_of_0009
    outcome = run_once(engine, load_settings(database_url="postgresql://unused@h/x", write_report=False,
                                             force_publish=True), customers_csv)  # 5 customers -> 300: sizes drift
    assert outcome.status == "published" and outcome.run_id == 4
    with engine.connect() as connection:
        history = connection.execute(sa.text(
            "select count(*) filter (where is_current), count(*) from segmentation.customer_segment_history"
            " where customer_id in (1, 2, 3, 4, 5, 6)")).one()
    assert history[0] == 6  # the sample file has customers 1..300: the five current ones and 3, who had left


def test_a_downgrade_refuses_while_another_segmentation_exists(engine, customers_csv):
    from segmentation.pipeline import run_once
    from segmentation.settings import load_settings

    run_once(engine, load_settings(database_url="postgresql://unused@h/x", write_report=False, segmentation="bank"),
             customers_csv)
    with pytest.raises(Exception, match="segment drop NAME"):
        db.downgrade(engine, "0009")
    with engine.connect() as connection:
        assert db.current_revision(connection) == HEAD
