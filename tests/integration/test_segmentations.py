"""Several segmentations in one database: each its own customers, runs, ids, history and views."""

import uuid

import pytest
import sqlalchemy as sa

from segmentation import db, segmentations
from segmentation.errors import ConfigurationError
from segmentation.pipeline import run_once
from segmentation.sample import write_order_sample, write_sample
from segmentation.settings import load_settings


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False, gap_references=2,
                         stability_resamples=2, **overrides)


def query(engine, statement, **parameters):
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(statement), parameters)]


def state(engine, name):
    """Everything a segmentation owns, as comparable rows."""
    schema = "segmentation" if name == "default" else f"segments_{name}"
    return {
        "runs": query(engine, "select run_id, status, k, n_customers, published_at from segmentation.run_history"
                              " where segmentation = :n order by run_id", n=name),
        "profiles": query(engine, "select profile.run_id, segment_id, segment_name, customer_count"
                                  " from segmentation_internal.segment_profiles as profile"
                                  " join segmentation_internal.runs using (run_id)"
                                  " join segmentation_internal.segmentations using (segmentation_id)"
                                  " where name = :n order by 1, 2", n=name),
        "customers": query(engine, "select customer_id, attributes, is_active, last_batch_id"
                                   " from segmentation_internal.customers join segmentation_internal.segmentations"
                                   " using (segmentation_id) where name = :n order by 1", n=name),
        "assigned": query(engine, f"select customer_id, segment_id, run_id from {schema}.current_customer_segments order by 1"),
        "history": query(engine, f"select * from {schema}.customer_segment_history order by 1, from_run_id"),
        "transitions": query(engine, f"select to_run_id, from_segment_id, to_segment_id, customer_count"
                                     f" from {schema}.segment_transitions_history where segmentation = :n order by 1, 2, 3",
                             n=name),
    }


@pytest.fixture
def files(tmp_path):
    customers = [write_sample(tmp_path / f"customers_{night}.csv", 400, seed=night) for night in range(3)]
    orders = [write_order_sample(tmp_path / f"orders_{night}.csv", 3000 + 500 * night, seed=5) for night in range(3)]
    return customers, orders


def test_two_segmentations_interleaved_never_touch_each_others_rows_ids_or_views(engine, files):
    customers, orders = files
    for night in range(3):
        before = state(engine, "rfm") if night else None
        crm = run_once(engine, settings(), customers[night])
        if before is not None:
            assert state(engine, "rfm") == before  # the customer export's run left the order log's segmentation alone
        before = state(engine, "default")
        rfm = run_once(engine, settings(segmentation="rfm"), orders_path=orders[night])
        assert state(engine, "default") == before
        assert crm.status == rfm.status == "published"
    names = query(engine, "select segmentation, schema_name, input, last_published_run_id from segmentation.segmentations")
    assert [(name, schema, kind) for name, schema, kind, _ in names] == [
        ("default", "segmentation", "customer export"), ("rfm", "segments_rfm", "orders")]
    # each numbers its own segments from 1, and its views show only its own customers
    for name, schema in (("default", "segmentation"), ("rfm", "segments_rfm")):
        first = query(engine, "select min(segment_id) from segmentation_internal.segment_profiles join"
                              " segmentation_internal.runs using (run_id) join segmentation_internal.segmentations"
                              " using (segmentation_id) where name = :n", n=name)
        assert first == [(1,)]
        shown = query(engine, f"select count(*), count(distinct run_id) from {schema}.current_customer_segments")
        latest = query(engine, "select n_customers from segmentation.run_history where segmentation = :n"
                               " and status = 'published' order by run_id desc limit 1", n=name)
        assert shown == [(latest[0][0], 1)]
    assert query(engine, "select count(distinct segmentation) from segmentation.run_history") == [(2,)]
    assert query(engine, "select count(*) from segmentation.customer_rfm") == [(0,)]  # the default has no orders
    # every view of a segmentation gives customer_id the same type, so they join
    types = query(engine, "select distinct data_type from information_schema.columns where table_schema = 'segments_rfm'"
                          " and column_name = 'customer_id'")
    assert types == [("bigint",)]
    joined = query(engine, "select count(*) from segments_rfm.current_customer_segments join segments_rfm.customer_rfm"
                           " using (customer_id)")
    assert joined[0][0] > 0


def test_a_run_under_a_changed_declaration_is_refused_before_importing_anything(engine, files, tmp_path):
    customers, _ = files
    run_once(engine, settings(), customers[0])
    before = state(engine, "default"), query(engine, "select count(*) from segmentation_internal.import_batches")
    bank = tmp_path / "bank.csv"
    # two clear income groups (evenly spread numbers have no structure: the health gate holds them)
    bank.write_text("ID,Income\n" + "".join(f"{n},{n if n < 25 else 1000 + n}\n" for n in range(1, 50)))
    declared = {"id_column": "ID", "columns": {"income": {"from": "Income", "type": "number"}}}
    with pytest.raises(ConfigurationError, match=r"declared differently: id column .*features .*--new-version"):
        run_once(engine, settings(dataset=declared), bank)
    assert (state(engine, "default"), query(engine, "select count(*) from segmentation_internal.import_batches")) == before
    # the two ways on: another name, or the next version of this one
    other = run_once(engine, settings(dataset=declared, segmentation="bank", k=2), bank)
    assert other.status == "published" and state(engine, "default") == before[0]
    renewed = run_once(engine, settings(dataset=declared, k=2), bank, new_version=True)
    assert renewed.status == "published"
    assert query(engine, "select version from segmentation.segmentations where segmentation = 'default'") == [(2,)]


def test_dropping_a_segmentation_removes_its_data_and_schema_and_nothing_else(engine, files):
    customers, orders = files
    run_once(engine, settings(), customers[0])
    before = state(engine, "default")
    run_once(engine, settings(segmentation="rfm"), orders_path=orders[0])
    with engine.begin() as connection:
        removed = segmentations.drop(connection, "rfm")
    assert removed["runs"] == 1 and removed["order_lines"] == 3000
    assert query(engine, "select to_regnamespace('segments_rfm')") == [(None,)]
    assert query(engine, "select count(*) from segmentation_internal.orders") == [(0,)]
    assert query(engine, "select relname from pg_class where relname ~ '_s2$|_s2_'") == []
    assert state(engine, "default") == before
    with engine.begin() as connection, pytest.raises(Exception, match="no segmentation 'rfm'"):
        segmentations.drop(connection, "rfm")


def test_a_reader_granted_before_a_segmentation_exists_reads_its_views_after(engine, database_url, files):
    customers, orders = files
    role = f"bi_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"create role {role} login password 'reader-pass'")
    try:
        db.grant_reader(engine, role)
        run_once(engine, settings(segmentation="rfm"), orders_path=orders[0])
        reader = sa.create_engine(sa.make_url(database_url).set(username=role, password="reader-pass"))
        with reader.connect() as connection:
            for view in ("current_customer_segments", "customer_segment_history", "segment_movers", "customer_rfm"):
                connection.execute(sa.text(f"select * from segments_rfm.{view} limit 1")).all()
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                connection.execute(sa.text("select * from segmentation_internal.current_segments")).all()
        reader.dispose()
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"drop owned by {role}")
            connection.exec_driver_sql(f"drop role {role}")


def test_a_segmentation_name_must_be_an_identifier():
    with pytest.raises(ConfigurationError, match="lowercase letters, digits and underscores"):
        settings(segmentation="Bad-Name")
    with pytest.raises(ConfigurationError, match="lowercase"):
        segmentations.check_name("x; drop table")


@pytest.mark.parametrize("id_type", ["whole", "text"])
def test_one_customers_history_and_one_segments_movers_are_read_through_indexes(engine, tmp_path, id_type):
    """Whatever the table sizes, a lookup by customer id or by segment has an index to use (with
    sequential scans forbidden, none of the per-customer tables is scanned whole)."""
    path = write_sample(tmp_path / "customers.csv", 400)
    declared = None
    if id_type == "text":
        declared = {"id_column": "CustomerID", "id_type": "text", "columns": {
            "annual_income_k": {"from": "Annual Income (k$)", "type": "number"},
            "spending_score": {"from": "Spending Score (1-100)", "type": "whole"}}}
    first = run_once(engine, settings(dataset=declared), path)
    lines = path.read_text().splitlines()
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join([lines[0], *(line if index % 10 else ",".join([*line.split(",")[:4], "99"])
                                              for index, line in enumerate(lines[1:]))]) + "\n")
    run_once(engine, settings(dataset=declared), changed)
    customer = "4" if id_type == "text" else 4
    queries = {
        "history": ("select * from segmentation.customer_segment_history where customer_id = :c", {"c": customer}),
        "current": ("select * from segmentation.current_customer_segments where customer_id = :c", {"c": customer}),
        "movers": ("select * from segmentation.segment_movers where to_segment_id = 2", {}),
    }
    with engine.connect() as connection:
        connection.exec_driver_sql("set enable_seqscan = off")
        for name, (statement, parameters) in queries.items():
            plan = connection.execute(sa.text("explain (format json) " + statement), parameters).scalar()
            scans = [node for node in _nodes(plan[0]["Plan"])
                     if node.get("Relation Name", "").startswith(("current_segments_g", "segment_stretches_s"))]
            assert scans, name
            for node in scans:  # each read of a per-customer table looks its rows up by a condition on an index
                condition = node.get("Index Cond", "") + node.get("Recheck Cond", "")  # (a bitmap scan's)
                assert any(key in condition for key in ("customer_id", "to_run_id", "segment_id")), (
                    name, node["Node Type"], condition)
    assert first.status == "published"


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)
