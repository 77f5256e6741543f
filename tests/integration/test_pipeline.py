"""The whole run against a real PostgreSQL: versions, views, stable ids, failures, the lock."""

import random

import pytest
import sqlalchemy as sa

from segmentation import db
from segmentation.errors import RunLocked
from segmentation.features import staging
from segmentation.pipeline import run_once
from segmentation.publish import assignment
from segmentation.settings import load_settings
from tests.conftest import published_assignment


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False, **overrides)


def query(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def assignments(engine):
    """The published assignment: customer id -> segment id."""
    return dict(published_assignment(engine, columns="customer_id, segment_id"))


def test_mall_file_gives_the_reference_segments(engine, mall_csv):
    outcome = run_once(engine, settings(), mall_csv)
    assert outcome.k == 5
    assert outcome.silhouette >= 0.55
    sizes = query(engine, "select customer_count from segmentation.current_segment_profiles order by 1 desc")
    assert [row[0] for row in sizes] == [81, 39, 35, 23, 22]
    shares = query(engine, "select sum(customer_share) from segmentation.current_segment_profiles")[0][0]
    assert shares == pytest.approx(1.0)
    evaluations = query(engine, "select k, is_chosen, silhouette, davies_bouldin, calinski_harabasz"
                                " from segmentation_internal.k_evaluations where run_id = :r order by k", r=outcome.run_id)
    assert [row.k for row in evaluations] == list(range(2, 11))
    assert [row.k for row in evaluations if row.is_chosen] == [5]
    assert all(row.silhouette is not None and row.davies_bouldin is not None for row in evaluations)


@pytest.mark.quick
def test_two_runs_keep_both_versions_and_every_customer_keeps_its_segment(engine, customers_csv):
    first = run_once(engine, settings(), customers_csv)
    after_first = assignments(engine)
    second = run_once(engine, settings(), customers_csv)
    assert second.run_id > first.run_id
    assert assignments(engine) == after_first and len(after_first) == 300  # the packaged sample's 300 customers
    current = query(engine, "select distinct run_id from segmentation.current_customer_segments")
    assert current == [(second.run_id,)]
    history = query(engine, "select count(*), count(*) filter (where is_current) from segmentation.customer_segment_history")
    assert history == [(300, 300)]  # nobody moved: one open stretch per customer, no closed one
    refit = run_once(engine, settings(model_tolerance=0), customers_csv)  # a new model, every customer assigned
    assert assignments(engine) == after_first and refit.status == "published"
    names = query(engine, "select run_id, segment_id, segment_name from segmentation_internal.segment_profiles order by 2, 1")
    assert {(s, n) for _, s, n in names if _ == first.run_id} == {(s, n) for _, s, n in names if _ == second.run_id}


def test_row_order_of_the_export_does_not_change_the_segments(server_url, template_database, tmp_path, customers_csv):
    from tests.conftest import _fresh_database

    lines = customers_csv.read_text().splitlines()
    body = lines[1:]
    random.Random(4).shuffle(body)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *body]) + "\n")
    results = []
    for path in (customers_csv, shuffled):
        with _fresh_database(server_url, template_database) as url:
            engine = db.make_engine(url)
            run_once(engine, settings(), path)
            results.append(assignments(engine))
            engine.dispose()
    assert results[0] == results[1]


@pytest.mark.quick
def test_a_run_that_fails_while_publishing_leaves_the_previous_run_current(engine, customers_csv, monkeypatch):
    good = run_once(engine, settings(), customers_csv)

    def broken_statistics(*args, **kwargs):  # after the run's assignment is written
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(assignment, "statistics", broken_statistics)
    with pytest.raises(RuntimeError, match="disk full"):
        run_once(engine, settings(), None)
    assert query(engine, "select distinct run_id from segmentation.current_segment_profiles") == [(good.run_id,)]
    failed = query(engine, "select run_id, status, error from segmentation.run_history where status <> 'published'")
    assert len(failed) == 1 and failed[0].status == "failed" and "disk full" in failed[0].error
    # nothing of the failed run was kept: its per-customer rows, profiles and evaluations rolled back with it
    assert query(engine, "select to_regclass(:table)", table=f"segmentation_internal.current_segments_g{failed[0].run_id}") == [(None,)]
    assert published_assignment(engine, columns="run_id") == [(good.run_id,)] * 300
    leftovers = query(engine, "select count(*) from segmentation_internal.k_evaluations where run_id = :r", r=failed[0].run_id)
    assert leftovers == [(0,)]


def test_a_run_that_never_finished_is_marked_abandoned_by_the_next(engine, customers_csv):
    with engine.begin() as connection:
        dead = connection.execute(sa.text(
            "insert into segmentation_internal.runs (segmentation_id) values (1) returning run_id")).scalar()
    run_once(engine, settings(), customers_csv)
    assert query(engine, "select status from segmentation_internal.runs where run_id = :r", r=dead) == [("abandoned",)]


@pytest.mark.quick
def test_a_second_run_is_refused_while_the_lock_is_held(engine, customers_csv):
    with db.run_lock(engine, wait_seconds=0):
        with pytest.raises(RunLocked, match="another segmentation run is in progress"):
            run_once(engine, settings(lock_wait_seconds=0.3), customers_csv)
    run_once(engine, settings(), customers_csv)  # free again afterwards


def test_missing_values_are_imputed_and_counted_on_the_run(engine, tmp_path, customers_csv):
    lines = customers_csv.read_text().splitlines()
    lines[1] = "0001,Male,19,,39"
    lines[2] = "0002,Male,21,15,"
    path = tmp_path / "gaps.csv"
    path.write_text("\n".join(lines) + "\n")
    outcome = run_once(engine, settings(), path)
    imputed = query(engine, "select n_imputed from segmentation_internal.runs where run_id = :r", r=outcome.run_id)[0][0]
    assert imputed == {"annual_income_k": 1, "spending_score": 1}


def test_age_and_gender_can_be_switched_on(engine, customers_csv):
    outcome = run_once(engine, settings(features="age,annual_income_k,spending_score,gender", k=4), customers_csv)
    assert outcome.k == 4
    features = query(engine, "select features from segmentation_internal.runs where run_id = :r", r=outcome.run_id)[0][0]
    assert features == ["age", "annual_income_k", "spending_score", "gender"]
    names = [row[0] for row in query(engine, "select segment_name from segmentation.current_segment_profiles")]
    # four features: each name says the (at most three) that set its segment apart
    assert len(set(names)) == 4 and all(1 <= n.count(",") + 1 <= 3 for n in names)
    assert any("younger" in n.lower() or "older" in n.lower() for n in names)


def test_customers_marked_inactive_are_left_out_of_the_next_fit(engine, tmp_path, customers_csv):
    run_once(engine, settings(), customers_csv)
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(customers_csv.read_text().splitlines()[:181]) + "\n")
    outcome = run_once(engine, settings(export_mode="full"), partial)
    assert outcome.n_customers == 180


def test_staged_customers_keep_tabs_quotes_backslashes_and_missing_values(engine):
    import pandas as pd

    from segmentation.dataset import MALL

    db.upgrade(engine)
    awkward = [['tab\there', 'quote " and \\ backslash', 'comma, {brace}', None], ['', 'NULL', None, '\\N']]
    frame = pd.DataFrame({"customer_id": ["a\tb", "c\\d"], **dict(zip(MALL.names, zip(*awkward)))})
    with engine.begin() as connection:  # a source table's chunk on its way to the SQL assignment
        relation = staging.create(connection, 1)
        staging.write_frames(connection, relation, [frame.iloc[:1], frame.iloc[1:]], MALL)
        stored = connection.execute(sa.text(f"select customer_id, attributes from {relation.as_string(None)} order by 1")).all()
    assert [tuple(row) for row in stored] == [("a\tb", awkward[0]), ("c\\d", awkward[1])]
