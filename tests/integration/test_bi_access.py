"""BI access: the read-only role, the dashboard queries in sql/, and retention."""

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from segmentation import db
from segmentation.errors import SegmentationError
from segmentation.pipeline import run_once
from segmentation.settings import load_settings

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "sql" / "dashboards").glob("*.sql"))
VIEWS = ["current_customer_segments", "current_segment_profiles", "run_history", "segment_transitions",
         "segment_profile_history", "segment_transitions_history", "current_segment_features",
         "customer_segment_history", "segment_movers", "segmentations"]


def settings(**overrides):
    # these tests are about access and retention, not the choice of k: fewer refits, same code
    return load_settings(database_url="postgresql://unused@localhost/unused", gap_references=2,
                         stability_resamples=2, write_report=False, **overrides)


@pytest.fixture
def reader_url(engine, database_url):
    """URL of a new login role made a member of segmentation_reader by `grant_reader`."""
    role = f"bi_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"create role {role} login password 'reader-pass'")
    db.grant_reader(engine, role)
    yield sa.make_url(database_url).set(username=role, password="reader-pass")
    with engine.begin() as connection:
        connection.exec_driver_sql(f"drop role {role}")


@pytest.fixture
def populated(engine, tmp_path, customers_csv):
    run_once(engine, settings(), customers_csv)
    lines = customers_csv.read_text().splitlines()
    lines[1] = "0001,Male,19,90,90"
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n")
    run_once(engine, settings(), changed)
    return engine


@pytest.mark.quick
def test_the_reader_can_select_every_view(populated, reader_url):
    reader = sa.create_engine(reader_url)
    with reader.connect() as connection:
        for view in VIEWS:
            rows = connection.execute(sa.text(f"select * from segmentation.{view}")).all()
            assert rows, f"{view} returned nothing"
    reader.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "select * from segmentation_internal.import_rejects",
        "select * from segmentation_internal.customers",
        "select * from segmentation_internal.current_segments",
        "select * from segmentation_internal.segment_stretches",
        "insert into segmentation_internal.customers (customer_id) values (999)",
        "update segmentation_internal.runs set status = 'failed'",
        "delete from segmentation_internal.segment_profiles",
        "truncate segmentation_internal.import_batches",
        "create table segmentation.sneaky (x int)",
        "drop view segmentation.run_history",
        "create or replace view segmentation.run_history as select 1 as run_id",
    ],
)
def test_the_reader_is_refused_everything_else(populated, reader_url, statement):
    reader = sa.create_engine(reader_url)
    with reader.connect() as connection:
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
            connection.execute(sa.text(statement))
    reader.dispose()


def test_grant_reader_refuses_a_role_that_does_not_exist_without_running_its_name(engine):
    with pytest.raises(SegmentationError, match="there is no role"):
        db.grant_reader(engine, 'x"; drop table segmentation_internal.customers; --')
    with engine.connect() as connection:
        assert connection.execute(sa.text("select to_regclass('segmentation_internal.customers')")).scalar()


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_every_dashboard_query_runs_as_the_reader(populated, reader_url, path):
    text = path.read_text()
    assert text.startswith("-- "), "each dashboard query starts with a comment saying what it shows"
    reader = sa.create_engine(reader_url)
    with reader.connect() as connection:
        rows = connection.execute(sa.text(text)).all()
    reader.dispose()
    assert rows


def test_there_are_the_six_dashboard_queries():
    assert {path.stem for path in DASHBOARDS} == {
        "segment_sizes_over_time", "segment_migration_between_runs", "top_customers_per_segment",
        "current_profiles", "run_quality_over_time", "segment_migration_over_time",
    }


def generations(engine):
    """Run ids of the tables of current_segments (one per fitted model still shown or not yet dropped)."""
    with engine.connect() as connection:
        return sorted(connection.execute(sa.text(
            "select cast(substring(c.relname from '[0-9]+$') as int) from pg_inherits i"
            " join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = cast('segmentation_internal.current_segments' as regclass)")).scalars())


def relations(engine):
    with engine.connect() as connection:
        return connection.execute(sa.text(
            "select count(*) from pg_class where relnamespace = to_regnamespace('segmentation_internal')")).scalar()


def test_nights_that_keep_the_model_add_no_relation_and_a_refit_replaces_the_assignment(engine, customers_csv):
    run_ids = [run_once(engine, settings(), customers_csv).run_id for _ in range(2)]
    before = relations(engine)
    run_ids.append(run_once(engine, settings(), customers_csv).run_id)
    assert relations(engine) == before  # no per-run relation: BI pickers list the same tables every night
    assert generations(engine) == run_ids[:1]  # the first run's model is kept, its table updated in place
    refit = run_once(engine, settings(model_tolerance=0), customers_csv).run_id
    assert generations(engine) == [refit]  # the earlier assignment is dropped once no view shows it
    with engine.connect() as connection:
        kept = connection.execute(sa.text("select count(distinct run_id) from segmentation_internal.segment_profiles")).scalar()
        views = connection.execute(sa.text("select count(*) from segmentation.current_customer_segments")).scalar()
    assert kept == 4 and views == 300  # profiles of every run; the newest run shows all 300 sample customers


def test_dropping_an_old_assignment_waits_briefly_for_dashboards_then_leaves_it_for_the_next_run(
    engine, database_url, customers_csv,
):
    first = run_once(engine, settings(), customers_csv).run_id
    dashboard = db.make_engine(database_url)
    with dashboard.connect() as reader:
        reader.execute(sa.text("begin"))
        reader.execute(sa.text(f"select count(*) from segmentation_internal.current_segments_g{first}")).scalar()
        outcome = run_once(engine, settings(model_tolerance=0), customers_csv)  # cannot drop g{first} now
        assert outcome.status == "published"
        assert generations(engine) == [first, outcome.run_id]
        reader.execute(sa.text("rollback"))
    dashboard.dispose()
    last = run_once(engine, settings(model_tolerance=0), customers_csv).run_id
    assert generations(engine) == [last]


def test_the_report_of_a_pruned_run_still_renders_and_says_why_plots_are_empty(engine, customers_csv, tmp_path):
    from segmentation import report

    first = run_once(engine, settings(keep_customer_rows_runs=2), customers_csv).run_id
    for _ in range(2):
        run_once(engine, settings(keep_customer_rows_runs=2), customers_csv)
    with engine.connect() as connection:
        sampled = connection.execute(sa.text("select distinct run_id from segmentation_internal.run_samples")).scalars()
        assert first not in set(sampled)
    with engine.begin() as connection:
        path = report.write_report(connection, first, tmp_path / "old.html")
    assert "customer sample was pruned" in path.read_text()
