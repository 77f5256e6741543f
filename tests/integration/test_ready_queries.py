"""The ready queries of sql/dashboards on declarations other than the mall's: a bank-like export
and an order log (RFM), each the default segmentation beside a second, named one whose rows the
cross-segmentation views also hold."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from segmentation.pipeline import run_once
from segmentation.sample import write_order_sample
from segmentation.settings import load_settings
from tests.integration.test_any_dataset import BANK, bank_rows, write_bank_csv

QUERIES = sorted((Path(__file__).resolve().parents[2] / "sql" / "dashboards").glob("*.sql"))
MALL_ONLY = {"age", "annual_income_k", "spending_score", "avg_age", "avg_annual_income_k", "avg_spending_score",
             "female_share_pct"}


def settings(**overrides):
    # the queries are under test, not the choice of k: fewer refits, the same code
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False,
                         gap_references=2, stability_resamples=2, **overrides)


def two_nights(engine, tmp_path, kind):
    """Two published runs of the default segmentation under `kind`'s declaration; return their ids
    and the columns its declaration adds to the profiles and to the customers."""
    if kind == "bank":
        rows = bank_rows(n=300)
        first = write_bank_csv(tmp_path / "bank1.csv", rows)
        changed = list(rows)
        for number in range(12):  # a dozen customers become wealthy savers: some move
            cid, _, _, _, region, _ = rows[number]
            changed[number] = (cid, "118.00", "950.00", "no", region, 1)
        second = write_bank_csv(tmp_path / "bank2.csv", changed)
        runs = [run_once(engine, settings(dataset=BANK, features="income,balance,student"), path)
                for path in (first, second)]
        return [run.run_id for run in runs], {"avg_income", "avg_balance"}, {"income", "balance", "region"}
    runs = [run_once(engine, settings(), orders_path=write_order_sample(tmp_path / f"orders{seed}.csv", rows, seed))
            for seed, rows in ((7, 1500), (8, 1800))]
    return [run.run_id for run in runs], {"avg_recency_days", "avg_frequency", "avg_monetary"}, {"monetary"}


@pytest.mark.parametrize("kind", ["bank", "orders"])
def test_every_ready_query_runs_on_a_declaration_that_is_not_the_malls(engine, tmp_path, customers_csv, kind):
    run_ids, profile_columns, customer_columns = two_nights(engine, tmp_path, kind)
    assert all(run_ids)
    other = run_once(engine, settings(segmentation="mall"), customers_csv).run_id  # rows the cross views hold too
    results = {}
    with engine.connect() as connection:
        for path in QUERIES:
            found = connection.execute(sa.text(path.read_text())).mappings().all()
            assert found, f"{path.name} returned no row on the {kind} declaration"
            results[path.stem] = found
    assert len(results) == 6
    for name, found in results.items():
        columns = set(found[0].keys())
        assert not columns & MALL_ONLY, (name, columns & MALL_ONLY)
        for key in ("run_id", "from_run_id", "to_run_id"):
            if key in columns:  # the default segmentation's runs only, not the named one's
                assert {row[key] for row in found} <= set(run_ids), (name, key)
                assert other not in {row[key] for row in found}
    assert profile_columns <= set(results["current_profiles"][0].keys())
    assert customer_columns <= set(results["top_customers_per_segment"][0].keys())
    # both nights were published today: the day's last run stands for the day
    assert {row["run_id"] for row in results["segment_sizes_over_time"]} == {run_ids[-1]}
    assert all(row["segment"].startswith(f"S{row['segment_id']} ") for row in results["segment_sizes_over_time"])
    assert {row["status"] for row in results["run_quality_over_time"]} == {"published"}
    assert {row["to_run_id"] for row in results["segment_migration_between_runs"]} == {run_ids[1]}
    tops = results["top_customers_per_segment"]
    assert all(not row["is_outlier"] for row in tops)
    for segment in {row["segment_id"] for row in tops}:  # nearest to the centre first
        distances = [row["distance_to_centroid"] for row in tops if row["segment_id"] == segment]
        assert 0 < len(distances) <= 10 and distances == sorted(distances)
