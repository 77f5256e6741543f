"""The job on a Citus cluster (a coordinator and two workers, tests/citus_cluster.py).

Skipped, saying why, where Citus is not installed (CI does not build it: docs/citus.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from segmentation import citus, db
from segmentation.errors import RunLocked
from segmentation.pipeline import run_once
from segmentation.sample import write_order_sample, write_sample
from segmentation.settings import Settings
from tests import citus_cluster

pytestmark = pytest.mark.skipif(citus_cluster.why_not() is not None, reason=citus_cluster.why_not() or "")

SHARDS = 32  # citus.shard_count's default


@pytest.fixture(scope="session")
def citus_nodes():
    given = os.environ.get("CITUS_TEST_URL")
    if given:
        yield citus_cluster.nodes_of(given)
        return
    with citus_cluster.private_cluster() as ports:
        yield [("127.0.0.1", port) for port in ports]


@pytest.fixture
def citus_url(citus_nodes):
    with citus_cluster.fresh_database(citus_nodes) as url:
        yield url


@pytest.fixture
def citus_engine(citus_url):
    engine = db.make_engine(db.sqlalchemy_url(citus_url))
    yield engine
    engine.dispose()


def settings(**given) -> Settings:
    return Settings(write_report=False, **given)


def scalar(engine, statement, **parameters):
    with engine.connect() as connection:
        return connection.execute(sa.text(statement), parameters).scalar()


def rows(engine, statement, **parameters):
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(statement), parameters)]


def answers(engine, schema: str = "segmentation") -> dict:
    """What a run published, as a BI tool reads it: each customer's segment, the profiles and features."""
    return {
        "runs": rows(engine, f"select k, status, n_customers from {schema}.run_history order by run_id"),
        "customers": rows(engine, f"select customer_id, segment_id, segment_name from {schema}.current_customer_segments"
                                  " order by customer_id"),
        "profiles": pd.read_sql(sa.text(f"select * from {schema}.current_segment_profiles order by segment_id"),
                                engine.connect()).drop(columns=["run_id", "published_at"], errors="ignore"),
        "features": pd.read_sql(sa.text(f"select segment_id, feature, category, mean, median, level"
                                        f" from {schema}.current_segment_features order by 1, 2, 3"), engine.connect()),
    }


def assert_same_answers(single: dict, cluster: dict) -> None:
    assert single["runs"] == cluster["runs"]
    assert single["customers"] == cluster["customers"]
    # sums over shards add in another order: the last bits of a mean may differ
    pd.testing.assert_frame_equal(single["profiles"], cluster["profiles"], check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(single["features"], cluster["features"], check_exact=False, rtol=1e-9)


def test_the_per_customer_tables_are_sharded_by_customer_id_together_and_the_small_ones_are_everywhere(citus_engine):
    db.upgrade(citus_engine)
    kinds = dict(rows(citus_engine, """
        select cast(logicalrelid as regclass)::text,
               case when partmethod = 'h' then 'distributed ' || colocationid when repmodel = 't' then 'reference'
                    else 'local' end
        from pg_dist_partition where logicalrelid::text like 'segmentation_internal.%'"""))
    distributed = {name: kind for name, kind in kinds.items() if kind.startswith("distributed")}
    assert set(distributed) == {f"segmentation_internal.{table}" for table in citus.DISTRIBUTED}
    assert len(set(distributed.values())) == 1  # co-located: one colocation group
    assert {name for name, kind in kinds.items() if kind == "reference"} == {
        f"segmentation_internal.{table}" for table in citus.REFERENCE}
    assert "segmentation_internal.run_lock" not in kinds and "segmentation_internal.alembic_version" not in kinds
    assert rows(citus_engine, "select column_to_column_name(logicalrelid, partkey) from pg_dist_partition"
                              " where partmethod = 'h' group by 1") == [("customer_id",)]
    assert scalar(citus_engine, "select count(*) from pg_trigger where not tgisinternal"
                                " and tgrelid::regclass::text like 'segmentation_internal.%'") == 0


def test_the_setting_citus_off_leaves_every_table_on_the_coordinator(citus_url):
    engine = db.make_engine(db.sqlalchemy_url(citus_url), citus="off")
    try:
        db.upgrade(engine)
        assert scalar(engine, "select count(*) from pg_dist_partition") == 0
        assert scalar(engine, "select count(*) from pg_trigger where tgname = 'customers_changed'") == 1
    finally:
        engine.dispose()


def test_a_customer_export_gives_the_same_k_segments_ids_and_profiles_as_one_server(
    citus_engine, citus_url, engine, tmp_path,
):
    first = write_sample(tmp_path / "customers.csv", 3000, seed=11)
    lines = first.read_text().splitlines(keepends=True)
    second = tmp_path / "customers_next.csv"  # the next night: 1 line in 30 changed, the last 50 customers gone
    second.write_text("".join(lines[:1] + [line.replace(",", ",9", 3) if number % 30 == 0 else line
                                           for number, line in enumerate(lines[1:-50])]))
    third = tmp_path / "customers_third.csv"  # and a night whose few changes keep the model
    third.write_text("".join(lines[:1] + [line.replace(",", ",8", 2) if number % 97 == 0 else line
                                          for number, line in enumerate(lines[1:-50])]))
    kept = []
    for target in (engine, citus_engine):
        run_once(target, settings(), csv_path=first)
        run_once(target, settings(model_tolerance=0), csv_path=second)
        if target is citus_engine:
            citus_engine.dispose()
            with citus_cluster.PlanLog(citus_url) as plans:
                kept.append(run_once(target, settings(), csv_path=third))
                citus_engine.dispose()
        else:
            kept.append(run_once(target, settings(), csv_path=third))
    assert [outcome.k for outcome in kept] == [kept[0].k] * 2
    assert _pulled(plans.entries) == []  # the kept model's changed customers, found and assigned on the workers
    assert_same_answers(answers(engine), answers(citus_engine))
    history = ("select customer_id, segment_id, valid_to is null from segmentation.customer_segment_history"
               " order by customer_id, valid_from")  # the times are each run's own
    assert rows(engine, history) == rows(citus_engine, history)


def test_an_order_log_gives_the_same_k_segments_ids_and_profiles_as_one_server(citus_engine, engine, tmp_path):
    orders = write_order_sample(tmp_path / "orders.csv", 12000, seed=5)
    for target in (engine, citus_engine):
        run_once(target, settings(segmentation="shop"), orders_path=orders)
    single, cluster = answers(engine, "segments_shop"), answers(citus_engine, "segments_shop")
    assert single["runs"][0][0] >= 2
    assert_same_answers(single, cluster)
    assert rows(engine, "select * from segments_shop.customer_rfm order by customer_id") == rows(
        citus_engine, "select * from segments_shop.customer_rfm order by customer_id")


#: the per-row statements of a run, by what their text starts with, that must run shard by shard
PER_ROW = {
    "sample": r"^copy \(select customer_id, .* where \(hashtextextended|^copy \(select customer_id",
    "assignment": r"^insert into segmentation_internal\.\"current_segments_g",
    "statistics": r"^select segment_id, .*count\(\*\) filter \(where is_outlier\)",
    "history": r"^insert into segmentation_internal\.segment_stretches",
    "transitions": r"^select previous_segment_id, segment_id, count\(\*\)",
    "customer count": r"^select count\(\*\) filter \(where dataset_id",
}


def _through_coordinator(plan: str) -> bool:
    """Whether a subplan of `plan` passes a table's rows through the coordinator: one that is not an
    aggregate or a limited read, nor the ids of an import's rejected lines (few by design: an
    import with more than max_reject_share of them is held)."""
    for found in re.finditer(r"Distributed Subplan [0-9_]+\n", plan):
        block = plan[found.end():].split("\n")[:10]
        if re.match(r"\s+->  (Aggregate|Limit)", block[0]) or any("(reason IS NOT NULL)" in line for line in block):
            continue
        return True
    return False


def _pulled(plans) -> list[str]:
    """Statements that passed a table's rows through the coordinator: an insert ... select pulled
    there, or a subplan (`_through_coordinator`). The rejected lines an import stores (a reference
    table, a copy on every node) are let through."""
    return [statement[:160] for statement, plan in plans
            if ("pull to coordinator" in plan and not statement.startswith("insert into segmentation_internal.import_rejects"))
            or _through_coordinator(plan)]


def test_the_runs_per_row_statements_run_on_the_workers_and_pull_no_table_to_the_coordinator(
    citus_engine, citus_url, tmp_path,
):
    path = write_sample(tmp_path / "customers.csv", 3000, seed=3)
    db.upgrade(citus_engine)
    citus_engine.dispose()
    with citus_cluster.PlanLog(citus_url) as plans:
        run_once(citus_engine, settings(fit_sample_size=1000), csv_path=path)
        citus_engine.dispose()
    for stage, pattern in PER_ROW.items():
        found = plans.on_workers(pattern)
        assert found, f"no {stage} statement was seen"
        for statement, plan in found:
            assert f"Task Count: {SHARDS}" in plan, f"{stage} did not run on every shard: {statement[:120]}\n{plan}"
    assert _pulled(plans.entries) == []


def test_a_reimport_merges_on_the_workers(citus_engine, citus_url, tmp_path):
    path = write_sample(tmp_path / "customers.csv", 2000, seed=3)
    run_once(citus_engine, settings(), csv_path=path)
    citus_engine.dispose()
    changed = tmp_path / "changed.csv"
    changed.write_text(path.read_text().replace(",4", ",5"))
    with citus_cluster.PlanLog(citus_url) as plans:
        run_once(citus_engine, settings(), csv_path=changed)
        citus_engine.dispose()
    merges = plans.on_workers(r'^insert into "segmentation_stage"\."import_changes"|^update segmentation_internal\.customers_s')
    assert merges and all(f"Task Count: {SHARDS}" in plan for _, plan in merges)
    assert _pulled(plans.entries) == []


def _kill_worker_backends(citus_nodes, database: str) -> int:
    """Terminate every backend of `database` on every worker (the run's connections there)."""
    killed = 0
    for host, port in citus_nodes[1:]:
        with psycopg.connect(f"postgresql://postgres@{host}:{port}/{database}", autocommit=True) as connection:
            killed += connection.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'"
            ).fetchone()[0]
    return killed


STAGES = {
    "import": "segmentation.ingest.load.ensure_dataset",
    "sample": "segmentation.features.read_sample",
    "assignment": "segmentation.publish.writing.assign",
    "publish": "segmentation.publish.history.store_sample",
}


@pytest.mark.parametrize("stage", STAGES)
def test_a_worker_backend_killed_in_a_stage_leaves_the_views_and_the_next_run_succeeds(
    stage, citus_engine, citus_url, citus_nodes, tmp_path, monkeypatch,
):
    first = write_sample(tmp_path / "customers.csv", 1500, seed=8)
    run_once(citus_engine, settings(), csv_path=first)
    before = answers(citus_engine)
    second = tmp_path / "next.csv"
    second.write_text(first.read_text().replace(",3", ",4"))
    module_name, _, function_name = STAGES[stage].rpartition(".")
    module = __import__(module_name, fromlist=[function_name])
    original, killed = getattr(module, function_name), []

    def and_kill(*args, **kwargs):
        result = original(*args, **kwargs)  # the stage's statements have reached the workers in its transaction
        killed.append(_kill_worker_backends(citus_nodes, sa.make_url(db.sqlalchemy_url(citus_url)).database))
        return result

    monkeypatch.setattr(module, function_name, and_kill)
    error = None
    try:
        run_once(citus_engine, settings(model_tolerance=0), csv_path=second)
    except Exception as raised:
        error = raised
    failed = error is not None
    monkeypatch.undo()
    assert killed and killed[0] > 0, f"the stage was not reached: {error!r}"
    citus_engine.dispose()
    if failed:  # nothing of the run is visible
        after = answers(citus_engine)
        assert after["customers"] == before["customers"]
        pd.testing.assert_frame_equal(after["profiles"], before["profiles"])
    else:  # Citus opened new connections for a stage that had only read: the run went through
        assert stage in ("import", "sample")
    outcome = run_once(citus_engine, settings(model_tolerance=0), csv_path=second)
    assert outcome.status == "published"
    assert scalar(citus_engine, "select count(*) from segmentation.current_customer_segments") == 1500


def test_one_run_at_a_time_on_the_cluster(citus_engine):
    db.upgrade(citus_engine)
    with db.run_lock(citus_engine, 0):
        with pytest.raises(RunLocked):
            with db.run_lock(citus_engine, 0):
                pass


def test_the_reader_role_reads_every_view_through_the_workers_and_writes_nothing(citus_engine, citus_url, tmp_path):
    run_once(citus_engine, settings(), csv_path=write_sample(tmp_path / "customers.csv", 800, seed=2))
    reader = f"bi_{os.getpid()}"
    with citus_engine.begin() as connection:
        connection.exec_driver_sql(f"drop role if exists {reader}")
        connection.exec_driver_sql(f"create role {reader} login")
    try:
        db.grant_reader(citus_engine, reader)
        url = sa.make_url(db.sqlalchemy_url(citus_url)).set(username=reader)
        with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as connection:
            views = [name for (name,) in connection.execute(
                "select table_name from information_schema.views where table_schema = 'segmentation'")]
            assert len(views) >= 8
            for view in views:
                connection.execute(f"select count(*) from segmentation.{view}").fetchone()
            assert connection.execute("select count(*) from segmentation.current_customer_segments").fetchone()[0] == 800
            connection.rollback()
            for statement in ("select count(*) from segmentation_internal.customers",
                              "update segmentation_internal.runs set k = 1",
                              "lock table segmentation_internal.run_lock in exclusive mode"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    connection.execute(statement)
                connection.rollback()
    finally:
        with citus_engine.begin() as connection:
            connection.exec_driver_sql(f"drop owned by {reader}")
            connection.exec_driver_sql(f"drop role {reader}")


def test_the_tests_cluster_helper_says_why_it_skips_without_citus(monkeypatch, tmp_path):
    monkeypatch.delenv("CITUS_TEST_URL", raising=False)
    monkeypatch.setattr(citus_cluster, "_libdir", lambda bindir: Path(tmp_path))
    assert "Citus is not installed" in citus_cluster.why_not()
    (tmp_path / "citus.so").touch()  # installed: the tests still ask to be asked for
    monkeypatch.delenv("CITUS_TESTS", raising=False)
    assert "run only with CITUS_TESTS=1" in citus_cluster.why_not()
    monkeypatch.setenv("CITUS_TESTS", "1")
    assert citus_cluster.why_not() is None


def test_a_second_order_log_is_refused_on_citus_naming_why_and_the_published_run_stays(citus_engine, tmp_path):
    orders = write_order_sample(tmp_path / "orders.csv", 3000, seed=4)
    run_once(citus_engine, settings(segmentation="shop"), orders_path=orders)
    before = answers(citus_engine, "segments_shop")
    with pytest.raises(Exception, match="only into a segmentation without orders"):
        run_once(citus_engine, settings(segmentation="shop"), orders_path=orders)
    assert answers(citus_engine, "segments_shop")["customers"] == before["customers"]


def test_a_downgrade_below_0012_refuses_on_a_distributed_schema_and_changes_nothing(citus_engine):
    db.upgrade(citus_engine)
    with pytest.raises(Exception, match="cannot turn the job's tables back into plain ones"):
        db.downgrade(citus_engine, "0011")
    with citus_engine.connect() as connection:
        assert db.current_revision(connection) == "0012"
        assert citus.distributed(connection)
