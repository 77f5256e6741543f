"""Any customer data set, end to end on PostgreSQL: a declared export, a source table, the guard rails."""

import numpy as np
import pytest
import sqlalchemy as sa

from segmentation import db
from segmentation.errors import RunHeld, SegmentationError
from segmentation.features import source_table, staging
from segmentation.model import fitting
from segmentation.pipeline import run_once
from segmentation.settings import load_settings
from tests.conftest import published_assignment

BANK = {
    "id_column": "Client ID",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "unit": "k$", "min": 0},
        "balance": {"from": "Balance", "type": "number", "unit": "$", "min": 0, "transform": "log"},
        "student": {"from": "Student", "type": "boolean", "label": "students"},
        "region": {"from": "Region", "type": "category", "values": ["East", "West", "South"]},
    },
}


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False, **overrides)


def query(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def bank_rows(n=600, seed=5):
    """Three planted groups: students with high balances, wealthy savers, and low-income small accounts."""
    rng = np.random.default_rng(seed)
    rows = []
    for number in range(n):
        group = number % 3
        income = [25, 120, 30][group] + rng.normal(0, 4)
        balance = [1800, 900, 40][group] * rng.lognormal(0, 0.2)
        student = ["Yes", "no", "N"][group] if rng.random() > 0.05 else ["y", "NO", "false"][group]
        region = rng.choice(["East", "West", "south"])
        rows.append((f"C-{number:05d}", f"{income:.2f}", f"{balance:.2f}", student, region, group))
    return rows


def write_bank_csv(path, rows, extra_lines=()):
    lines = ["Client ID,Income,Balance,Student,Region,Branch"]
    lines += [f"{cid},{income},{balance},{student},{region},B{group}" for cid, income, balance, student, region, group in rows]
    lines += list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_declared_export_is_segmented_on_its_own_columns(engine, tmp_path):
    rows = bank_rows()
    bad = ["C-99999,abc,10,yes,East", "C-99998,20,-3,no,West", "C-99997,20,10,maybe,East", "C-99996,20,10,no,North"]
    path = write_bank_csv(tmp_path / "bank.csv", rows, [line + ",B9" for line in bad])
    # region is declared but random: profiled and shown, not clustered on
    outcome = run_once(engine, settings(dataset=BANK, features="income,balance,student", max_reject_share=0.05), path)
    # every line accounted for, rejects name their column
    batch = query(engine, "select rows_read, rows_inserted, rows_rejected from segmentation_internal.import_batches")[0]
    assert batch == (len(rows) + 4, len(rows), 4)
    reasons = [row[0] for row in query(engine, "select reason from segmentation_internal.import_rejects order by line_number")]
    assert any("income" in reason for reason in reasons) and any("balance" in reason for reason in reasons)
    assert any("student" in reason for reason in reasons) and any("region" in reason for reason in reasons)
    # the planted groups come out as segments
    assert outcome.k == 3
    planted = {cid: group for cid, *_, group in rows}
    pairs = query(engine, "select customer_id, segment_id from segmentation.current_customer_segments")
    by_group = {}
    for cid, segment_id in pairs:
        by_group.setdefault(planted[cid], set()).add(segment_id)
    assert all(len(segments) == 1 for segments in by_group.values())
    # the views carry the declared columns, typed, text ids as given
    columns = query(
        engine,
        "select column_name, data_type from information_schema.columns"
        " where table_schema = 'segmentation' and table_name = 'current_customer_segments'",
    )
    types = dict(columns)
    assert types["customer_id"] == "text" and types["income"] == "numeric"
    assert types["student"] == "boolean" and types["region"] == "text"
    assert "gender" not in types and "spending_score" not in types
    sample = query(engine, "select customer_id, student, region from segmentation.current_customer_segments"
                           " where customer_id = 'C-00000'")[0]
    assert sample == ("C-00000", True, "East" if rows[0][4] == "East" else sample[2])
    # long-format profiles: numbers with median, categories as shares summing to one per segment
    features = query(engine, "select segment_id, feature, category, mean, median, level"
                             " from segmentation.current_segment_features")
    assert {row.feature for row in features} == {"income", "balance", "student", "region"}
    region_shares = {}
    for row in features:
        if row.feature == "region":
            region_shares[row.segment_id] = region_shares.get(row.segment_id, 0) + row.mean
    assert all(share == pytest.approx(1.0) for share in region_shares.values())
    profiles = query(engine, "select segment_name, avg_income, student_share, region_east_share, recommendation"
                             " from segmentation.current_segment_profiles")
    names = [row.segment_name for row in profiles]
    assert len(set(names)) == len(names) == 3
    assert any("students" in name for name in names)
    for row in profiles:
        assert "spending" not in row.recommendation.lower() and "premium" not in row.recommendation.lower()
    # the run records its declaration
    recorded = query(engine, "select dataset ->> 'id_type', features from segmentation_internal.runs where run_id = :r",
                     r=outcome.run_id)[0]
    assert recorded == ("text", ["income", "balance", "student"])


def test_a_source_table_is_read_directly_and_imports_nothing(engine):
    rows = bank_rows(300)
    with engine.begin() as connection:
        connection.exec_driver_sql("create schema crm")
        connection.exec_driver_sql(
            'create table crm.customer_features ("Client ID" text, "Income" numeric, "Balance" numeric,'
            ' "Student" boolean, "Region" text)'
        )
        connection.execute(
            sa.text("insert into crm.customer_features values (:c, :i, :b, :s, :r)"),
            [{"c": cid, "i": income, "b": balance, "s": student.lower() in ("yes", "y"), "r": region.title()}
             for cid, income, balance, student, region, _ in rows],
        )
    outcome = run_once(engine, settings(dataset=BANK, source="crm.customer_features"))
    assert outcome.n_customers == 300 and outcome.import_result is None
    assert query(engine, "select count(*) from segmentation_internal.import_batches") == [(0,)]
    assert query(engine, "select count(*) from segmentation.current_customer_segments") == [(300,)]
    assert query(engine, "select source_name from segmentation_internal.runs") == [("crm.customer_features",)]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ('alter table crm.customer_features drop column "Balance"', "no column 'Balance'"),
        ("insert into crm.customer_features values ('C-00000', 10, 10, true, 'East')", "appears 2 times"),
        ("insert into crm.customer_features values (null, 10, 10, true, 'East')", "NULL Client ID"),
        ("update crm.customer_features set \"Region\" = 'Mars' where \"Client ID\" = 'C-00001'", "'Mars' is not one of"),
    ],
)
def test_a_bad_source_is_one_clear_error_before_any_fit(engine, statement, message):
    with engine.begin() as connection:
        connection.exec_driver_sql("create schema crm")
        connection.exec_driver_sql(
            'create table crm.customer_features ("Client ID" text, "Income" numeric, "Balance" numeric,'
            ' "Student" boolean, "Region" text)'
        )
        connection.execute(
            sa.text("insert into crm.customer_features values (:c, :i, :b, :s, :r)"),
            [{"c": f"C-{n:05d}", "i": 10 + n, "b": n, "s": n % 2 == 0, "r": "East"} for n in range(50)],
        )
        connection.exec_driver_sql(statement)
    with pytest.raises(SegmentationError, match=message):
        run_once(engine, settings(dataset=BANK, source="crm.customer_features"))
    assert query(engine, "select status from segmentation_internal.runs") == [("failed",)]
    assert query(engine, "select count(*) from segmentation.current_segment_profiles") == [(0,)]


def create_bank_source(engine, rows):
    """crm.customer_features holding `rows` (ids, then the BANK columns as the source spells them)."""
    with engine.begin() as connection:
        connection.exec_driver_sql("create schema if not exists crm")
        connection.exec_driver_sql(
            'create table crm.customer_features ("Client ID" text, "Income" numeric, "Balance" numeric,'
            ' "Student" text, "Region" text)'
        )
        connection.execute(
            sa.text("insert into crm.customer_features values (:c, :i, :b, :s, :r)"),
            [{"c": cid, "i": income, "b": balance, "s": student, "r": region}
             for cid, income, balance, student, region, _ in rows],
        )


def staging_tables(engine):
    return query(engine, "select relname from pg_class where relname ~ '^run_customers_r[0-9]+$'")


def test_a_source_is_staged_a_few_rows_at_a_time_and_gives_what_one_read_gives(engine, monkeypatch):
    rows = bank_rows(300)
    create_bank_source(engine, rows[150:] + rows[:150])  # not in id order: chunks are not either
    whole = run_once(engine, settings(dataset=BANK, source="crm.customer_features"))
    assert staging_tables(engine) == []
    whole_rows = published_assignment(engine)
    chunk_sizes = []
    checked = source_table._checked_source_chunk

    def spy(frame, source, dataset):
        chunk_sizes.append(len(frame))
        return checked(frame, source, dataset)

    monkeypatch.setattr(source_table, "_checked_source_chunk", spy)
    monkeypatch.setattr(staging, "FRAME_CHUNK_ROWS", 7)
    # model_tolerance 0: the second run refits and assigns every customer again instead of keeping the model
    chunked = run_once(engine, settings(dataset=BANK, source="crm.customer_features", model_tolerance=0))
    # never more than 7 customers in memory on their way to the staging table, every one staged once
    assert max(chunk_sizes) == 7 and sum(chunk_sizes) == 300 and len(chunk_sizes) == 43
    assert chunked.n_customers == whole.n_customers == 300
    assert query(engine, "select model_kept from segmentation_internal.runs where run_id = :r", r=chunked.run_id) == [
        (False,)]
    assert published_assignment(engine) == whole_rows
    assert staging_tables(engine) == []
    # the booleans and categories are stored as an import stores them
    stored = dict(published_assignment(engine, columns="customer_id, attributes"))
    assert {value[2] for value in stored.values()} == {"true", "false"}
    assert {value[3] for value in stored.values()} == {"East", "West", "South"}


def test_a_source_larger_than_the_fit_sample_is_fitted_on_a_seeded_hash_sample_reproducibly(engine, monkeypatch):
    create_bank_source(engine, bank_rows(400))
    samples = []
    segment = fitting.segment

    def spy(sample, n_customers, *arguments):
        samples.append((sample, n_customers))
        return segment(sample, n_customers, *arguments)

    monkeypatch.setattr("segmentation.pipeline.segment", spy)
    first = run_once(engine, settings(dataset=BANK, source="crm.customer_features", fit_sample_size=150))
    first_rows = published_assignment(engine)
    monkeypatch.setattr(staging, "FRAME_CHUNK_ROWS", 11)
    # model_tolerance 0: the second run fits again (it would keep the first run's model otherwise)
    second = run_once(engine, settings(dataset=BANK, source="crm.customer_features", fit_sample_size=150,
                                       model_tolerance=0))
    (one, n_one), (two, n_two) = samples
    assert n_one == n_two == 400 and 100 < len(one) < 200
    ids = list(one["customer_id"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert one.equals(two)
    assert [row[:2] for row in first_rows] == [row[:2] for row in published_assignment(engine)]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # ids repeated 50 rows apart: in different chunks of 7
        ([("C-00001", 1, 1, "yes", "East")] * 2, "'C-00001' appears 3 times"),
        ([(None, 1, 1, "yes", "East")] * 3, "3 row\\(s\\) have a NULL Client ID"),
        ([("C-09999", 1, 1, "perhaps", "East")], "'perhaps' is not a boolean"),
    ],
)
def test_a_bad_source_read_in_chunks_is_one_clear_error_and_leaves_no_staging_table(engine, monkeypatch, rows, message):
    create_bank_source(engine, bank_rows(100))
    with engine.begin() as connection:
        connection.execute(
            sa.text("insert into crm.customer_features values (:c, :i, :b, :s, :r)"),
            [{"c": cid, "i": income, "b": balance, "s": student, "r": region} for cid, income, balance, student, region in rows],
        )
    monkeypatch.setattr(staging, "FRAME_CHUNK_ROWS", 7)
    with pytest.raises(SegmentationError, match=message):
        run_once(engine, settings(dataset=BANK, source="crm.customer_features"))
    assert query(engine, "select status from segmentation_internal.runs") == [("failed",)]
    assert staging_tables(engine) == []


def test_whole_ids_of_a_source_lose_their_leading_zeros_and_then_must_still_be_unique(engine, monkeypatch):
    whole = {**BANK, "id_type": "whole"}
    rows = [(f"{'0' * (number % 3)}{number}", *row[1:]) for number, row in enumerate(bank_rows(60))]
    create_bank_source(engine, rows)
    monkeypatch.setattr(staging, "FRAME_CHUNK_ROWS", 7)
    outcome = run_once(engine, settings(dataset=whole, source="crm.customer_features", k=3))
    stored = [row[0] for row in query(engine, "select customer_id from segmentation.current_customer_segments")]
    assert outcome.n_customers == 60 and sorted(stored) == list(range(60))
    with engine.begin() as connection:  # 0041 is customer 41 again, in another chunk
        connection.exec_driver_sql("insert into crm.customer_features values ('0041', 1, 1, 'yes', 'East')")
    with pytest.raises(SegmentationError, match="'41' appears 2 times"):
        run_once(engine, settings(dataset=whole, source="crm.customer_features", k=3))
    assert staging_tables(engine) == []


def test_a_run_that_fails_after_staging_drops_its_staged_customers(engine, monkeypatch):
    create_bank_source(engine, bank_rows(120))
    seen = []

    def broken(*arguments):
        seen.extend(staging_tables(engine))
        raise RuntimeError("the fit broke")

    monkeypatch.setattr("segmentation.pipeline.segment", broken)
    with pytest.raises(RuntimeError, match="the fit broke"):
        run_once(engine, settings(dataset=BANK, source="crm.customer_features"))
    assert seen == [("run_customers_r1",)]  # staged and committed before the fit
    assert staging_tables(engine) == []
    assert query(engine, "select status from segmentation_internal.runs") == [("failed",)]


def test_the_next_run_drops_the_staged_customers_of_a_run_whose_process_died(engine):
    create_bank_source(engine, bank_rows(120))
    db.upgrade(engine)
    with engine.begin() as connection:  # what a run killed between its read and its publish leaves
        connection.exec_driver_sql("insert into segmentation_internal.runs (status, segmentation_id) values ('running', 1)")
        connection.exec_driver_sql(
            'create unlogged table segmentation_internal.run_customers_r1 (customer_id text collate "C", attributes text[])'
        )
        connection.exec_driver_sql("create table segmentation_internal.run_customers_kept (id int)")  # not a staging table
    outcome = run_once(engine, settings(dataset=BANK, source="crm.customer_features"))
    assert outcome.status == "published" and outcome.run_id == 2
    assert staging_tables(engine) == []
    assert query(engine, "select to_regclass('segmentation_internal.run_customers_kept') is not null") == [(True,)]
    assert query(engine, "select run_id, status from segmentation_internal.runs order by 1") == [
        (1, "abandoned"), (2, "published")
    ]


def test_a_file_with_40_percent_rejected_lines_is_held_not_published(engine, tmp_path):
    rows = bank_rows(60)
    bad = [f"C-9{n:04d},not-a-number,10,yes,East,B1" for n in range(40)]
    path = write_bank_csv(tmp_path / "bank.csv", rows, bad)
    with pytest.raises(RunHeld, match=r"rejected 40 of 100 lines \(40.0%.*income '…' is not a number \(40 lines,"
                                      r" e.g. line 62: income 'not-a-number' is not a number\)"):
        run_once(engine, settings(dataset=BANK), path)
    assert query(engine, "select status from segmentation_internal.runs") == [("held",)]
    assert query(engine, "select count(*) from segmentation.current_customer_segments") == [(0,)]


def test_a_k_with_a_tiny_segment_is_not_chosen(engine, tmp_path):
    # three clear groups of 330 customers and 3 far-away customers (0.3%): k = 4 would isolate them
    rng = np.random.default_rng(3)
    lines = ["CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"]
    centres = [(20, 20), (60, 80), (110, 20)]
    number = 0
    for income, spending in centres:
        for _ in range(330):
            number += 1
            lines.append(f"{number},Female,30,{income + rng.normal(0, 3):.1f},{int(np.clip(spending + rng.normal(0, 3), 1, 100))}")
    for _ in range(3):
        number += 1
        lines.append(f"{number},Male,30,900,99")
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    outcome = run_once(engine, settings(k_max=6), path)
    smallest = query(engine, "select min(customer_share) from segmentation.current_segment_profiles")[0][0]
    assert smallest >= 0.01
    evaluations = query(engine, "select k, smallest_segment_share from segmentation_internal.k_evaluations where run_id = :r",
                        r=outcome.run_id)
    assert any(share < 0.01 for _, share in evaluations)  # such a k existed and was passed over
    assert "min_segment_share" in outcome.rationale


def test_importing_the_mall_after_the_sample_segments_only_the_new_file(engine, tmp_path, customers_csv):
    from segmentation.sample import write_sample

    run_once(engine, settings(), customers_csv)
    smaller = write_sample(tmp_path / "smaller.csv", 120, seed=11)
    outcome = run_once(engine, settings(), smaller)
    assert outcome.n_customers == 120
    assert outcome.import_result.rows_deactivated == 300 - 120
    assert query(engine, "select count(*) from segmentation_internal.customers where is_active") == [(120,)]
