"""Segments people can trust: stable ids, per-customer detail, drift, the health gate, the report."""

import re

import numpy as np
import pytest
import sqlalchemy as sa

from segmentation import db
from segmentation.errors import RunHeld
from segmentation.pipeline import run_once
from segmentation.settings import load_settings
from tests.conftest import published_assignment


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", **overrides)


def query(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def profiles(engine, run_id):
    return {row.segment_id: row for row in query(
        engine, "select * from segmentation_internal.segment_profiles where run_id = :r", r=run_id)}


def with_new_customers(csv_path, tmp_path, count, seed=11):
    """The customers of `csv_path` plus `count` new customers drawn near existing ones."""
    lines = csv_path.read_text().splitlines()
    existing = len(lines) - 1
    next_id = max(int(line.split(",")[0]) for line in lines[1:]) + 1
    rng = np.random.default_rng(seed)
    extra = []
    for offset in range(count):
        template = lines[1 + int(rng.integers(0, existing))].split(",")
        income = max(15, int(template[3]) + int(rng.integers(-3, 4)))
        spending = min(99, max(1, int(template[4]) + int(rng.integers(-3, 4))))
        extra.append(f"{next_id + offset},{template[1]},{template[2]},{income},{spending}")
    path = tmp_path / "grown.csv"
    path.write_text("\n".join(lines + extra) + "\n")
    return path


def test_adding_three_percent_new_customers_keeps_every_segment_id_and_name(engine, tmp_path, customers_csv):
    first = run_once(engine, settings(), customers_csv)
    segments_before = dict(published_assignment(engine, columns="customer_id, segment_id"))
    second = run_once(engine, settings(), with_new_customers(customers_csv, tmp_path, 9))  # 3% of 300
    segments_after = dict(published_assignment(engine, columns="customer_id, segment_id"))
    before, after = profiles(engine, first.run_id), profiles(engine, second.run_id)
    assert set(after) == set(before)
    assert {i: p.segment_name for i, p in after.items()} == {i: p.segment_name for i, p in before.items()}
    assert all(p.centroid_shift < 0.2 for p in after.values())
    moved = {customer for customer, segment in segments_before.items() if segments_after[customer] != segment}
    assert len(moved) <= 4  # at most a couple of borderline customers change segment
    assert len(segments_after) == len(segments_before) + 9
    movers = query(engine, "select customer_id from segmentation.segment_movers")
    assert {str(customer) for customer, in movers} == moved  # the movers view lists exactly them


def test_every_customer_has_a_second_segment_a_margin_and_an_outlier_flag(engine, customers_csv):
    run_once(engine, settings(), customers_csv)
    rows = query(engine, "select * from segmentation.current_customer_segments")
    assert len(rows) == 300
    assert all(row.second_segment_id is not None and row.second_segment_id != row.segment_id for row in rows)
    assert all(row.margin_to_second >= 0 for row in rows)
    outliers = [row for row in rows if row.is_outlier]
    assert len(outliers) < 10
    assert query(engine, "select n_outliers from segmentation.run_history")[0][0] == len(outliers)


def test_profiles_carry_indexes_medians_and_what_sets_each_segment_apart(engine, mall_csv):
    run_once(engine, settings(), mall_csv)
    rows = {row.segment_name: row for row in query(engine, "select * from segmentation.current_segment_profiles")}
    premium = rows["High income, high spending"]
    assert premium.annual_income_index > 130 and premium.spending_score_index > 150
    assert premium.median_annual_income_k == pytest.approx(79.0)
    assert "spending score 64% above average" in premium.distinguishing_features
    weighted = sum(row.customer_share * row.avg_annual_income_k for row in rows.values())
    assert weighted == pytest.approx(60.56, abs=0.01)  # the overall mean income of the mall file


def test_segment_transitions_count_customers_moving_between_published_runs(engine, tmp_path, customers_csv):
    first = run_once(engine, settings(), customers_csv)
    lines = customers_csv.read_text().splitlines()
    assert lines[1] == "0001,Male,48,91,21"  # a high-income low-spender in the packaged sample
    lines[1] = "0001,Male,19,90,90"  # customer 1 becomes a high-income high-spender
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n")
    second = run_once(engine, settings(), changed)
    moves = query(engine, "select * from segmentation.segment_transitions where from_segment_id <> to_segment_id")
    assert [(m.from_run_id, m.to_run_id, m.customer_count) for m in moves] == [(first.run_id, second.run_id, 1)]
    assert moves[0].to_segment_name == "High income, high spending"
    total = query(engine, "select sum(customer_count) from segmentation.segment_transitions")[0][0]
    assert total == 300


def test_a_run_whose_quality_collapses_is_held_and_the_previous_stays_current(engine, customers_csv):
    good = run_once(engine, settings(), customers_csv)
    assert 0.5 < good.silhouette < 0.9
    with pytest.raises(RunHeld, match=rf"silhouette {good.silhouette:.3f} is below min_silhouette 0\.9"):
        run_once(engine, settings(min_silhouette=0.9), customers_csv)
    held = query(engine, "select run_id, status, error, published_at from segmentation.run_history where status = 'held'")
    assert len(held) == 1 and held[0].published_at is None and "min_silhouette" in held[0].error
    assert query(engine, "select distinct run_id from segmentation.current_segment_profiles") == [(good.run_id,)]
    # the held run's results are kept for inspection: profiles and its customer sample (for its report)
    assert query(engine, "select count(*) from segmentation_internal.run_samples where run_id = :r",
                 r=held[0].run_id) == [(300,)]
    assert query(engine, "select count(*) from segmentation_internal.segment_profiles where run_id = :r",
                 r=held[0].run_id)[0][0] > 0
    forced = run_once(engine, settings(min_silhouette=0.9, force_publish=True), customers_csv)
    assert query(engine, "select distinct run_id from segmentation.current_segment_profiles") == [(forced.run_id,)]


def test_segment_sizes_that_drift_too_far_hold_the_run(engine, tmp_path, customers_csv):
    run_once(engine, settings(), customers_csv)
    lines = customers_csv.read_text().splitlines()
    # keep every customer, but make most of the middle segment big spenders with high income
    shifted = [lines[0]] + [
        f"{parts[0]},{parts[1]},{parts[2]},{int(parts[3]) + 35},{min(100, int(parts[4]) + 35)}"
        if 40 <= int(parts[3]) <= 65 else line
        for line in lines[1:] for parts in [line.split(",")]
    ]
    path = tmp_path / "shifted.csv"
    path.write_text("\n".join(shifted) + "\n")
    with pytest.raises(RunHeld, match="segment sizes drifted: PSI"):
        run_once(engine, settings(), path)
    psi = query(engine, "select size_psi from segmentation_internal.runs where status = 'held'")[0][0]
    assert psi > 0.25


def test_the_report_has_every_section_and_image(engine, customers_csv, data_dir):
    run_once(engine, settings(), customers_csv)
    second = run_once(engine, settings(), customers_csv)
    path = query(engine, "select report_path from segmentation_internal.runs where run_id = :r", r=second.run_id)[0][0]
    assert path.startswith(str(data_dir))
    html = open(path, encoding="utf-8").read()
    sections = re.findall(r"<h2>(.*?)</h2>", html)
    assert sections == ["The segments", "Segment averages", "What changed since the last run",  # marketers first
                        "About this run", "The data", "Choosing the number of segments", "Glossary"]
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 6 and all(len(image) > 10_000 and alt.strip() for alt, image in images)
    for text in ("High income, high spending", "Premium offers", "on the shuffled reference",  # the packaged sample
                 "Compared with run", "Customers moved between segments"):
        assert text in html
    assert "http" not in html.split("<body>")[1]  # self-contained: nothing fetched


def test_reports_of_two_databases_go_to_folders_of_their_own(engine, customers_csv, data_dir, empty_database_url):
    """Run 1 of two databases: two reports, one folder per database, neither overwritten."""
    other = db.make_engine(empty_database_url)
    try:
        db.upgrade(other)
        paths = [run_once(target, settings(), customers_csv).report_path for target in (engine, other)]
    finally:
        other.dispose()
    assert paths[0].name == paths[1].name == "run-1.html" and paths[0] != paths[1]
    assert all(path.is_file() and path.parent.parent == data_dir / "reports" for path in paths)
    assert paths[1].parent.name == db.database_folder_name(other.url)
