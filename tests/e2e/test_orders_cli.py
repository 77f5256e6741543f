"""`segment` on an order log as a user runs it: generate a log, import it, segment on RFM."""

import collections
import csv
import datetime

import pytest

from tests.e2e.test_cli import environment, query, segment

pytestmark = pytest.mark.e2e

FAST = {"SEGMENT_GAP_REFERENCES": "2", "SEGMENT_STABILITY_RESAMPLES": "3"}


def planted(path):
    """Customers of two planted groups, told from the file itself: recent buyers of 11+ orders
    (only the generator's champions) and one- or two-order customers gone 450+ days (its lost)."""
    purchases, last = collections.Counter(), {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if float(row["Revenue"]) >= 0:
                purchases[row["CustomerID"]] += 1
                day = datetime.date.fromisoformat(row["OrderDate"])
                last[row["CustomerID"]] = max(last.get(row["CustomerID"], day), day)
    end = max(last.values()) + datetime.timedelta(days=1)
    champions = {c for c, n in purchases.items() if n >= 11 and (end - last[c]).days <= 30}
    lost = {c for c, n in purchases.items() if n <= 2 and (end - last[c]).days >= 450}
    return champions, lost


def test_a_generated_order_log_gives_champions_and_lost_customers_as_separate_segments(database_url, tmp_path):
    env = environment(DATABASE_URL=database_url, **FAST)
    log = tmp_path / "orders.csv"
    made = segment("sample", "--orders", "--rows", "12000", "--out", str(log), env=env)
    assert made.returncode == 0, made.stderr
    result = segment("run", "--orders", str(log), env=env)
    assert result.returncode == 0, result.stderr
    assert "order batch" in result.stdout and "12000 lines read, 12000 inserted" in result.stdout

    champions, lost = planted(log)
    assert len(champions) > 50 and len(lost) > 200
    rows = query(database_url, "select customer_id, segment_name from segmentation.current_customer_segments")
    name_of = {str(row.customer_id): row.segment_name for row in rows}
    champion_names = collections.Counter(name_of[c] for c in champions)
    lost_names = collections.Counter(name_of[c] for c in lost)
    top_champion, champion_count = champion_names.most_common(1)[0]
    top_lost, lost_count = lost_names.most_common(1)[0]
    assert top_champion.startswith("Champions") and champion_count >= 0.9 * len(champions)
    assert top_lost.startswith("Lost") and lost_count >= 0.9 * len(lost)
    profiles = query(database_url, "select segment_name, recommendation from segmentation.current_segment_profiles")
    assert len({row.segment_name for row in profiles}) == len(profiles)
    assert any("Reward" in row.recommendation for row in profiles if row.segment_name == top_champion)
    features = query(database_url, "select distinct feature, unit from segmentation.current_segment_features")
    assert ("recency_days", "days") in {(row.feature, row.unit) for row in features}
    assert query(database_url, "select count(*) from segmentation_internal.runs where as_of is not null")[0][0] == 1


def test_orders_imported_alone_are_segmented_by_a_plain_run(database_url, tmp_path):
    env = environment(DATABASE_URL=database_url, **FAST)
    log = tmp_path / "orders.csv"
    assert segment("sample", "--orders", "--rows", "6000", "--out", str(log), env=env).returncode == 0
    imported = segment("import-orders", str(log), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "6000 lines read, 6000 inserted" in imported.stdout
    again = segment("import-orders", str(log), env=env)
    assert "0 inserted, 6000 unchanged" in again.stdout and "nothing changed" in again.stdout
    result = segment("run", env=env)
    assert result.returncode == 0, result.stderr
    assert "avg recency (days)" in result.stdout
