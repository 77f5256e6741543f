"""The set-based assignment in PostgreSQL gives what the Python path (`clustering.assign`) gives."""

import types

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from psycopg import sql

from segmentation import db, features
from segmentation.dataset import parse_dataset
from segmentation.features import staging
from segmentation.model import clustering, fitting
from segmentation.profiling.statistics import SegmentStatistics
from segmentation.publish import assignment
from segmentation.settings import load_settings

DECLARATION = {
    "id_column": "Client ID",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "unit": "k$"},
        "balance": {"from": "Balance", "type": "number", "min": 0, "transform": "log"},
        "age": {"from": "Age", "type": "whole"},
        "student": {"from": "Student", "type": "boolean"},
        "region": {"from": "Region", "type": "category", "values": ["East", "West", "South"]},
        "channel": {"from": "Channel", "type": "category"},  # declared, not a feature: a second category
    },
}
RUN_ID = 7


def planted_customers(n=3_000, seed=3) -> pd.DataFrame:
    """Three planted groups as the run reads customers (text values, None where unknown), with
    missing values in every column and one customer far from everyone."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % 3
    income = np.array([25.0, 120.0, 60.0])[group] + rng.normal(0, 6, n)
    balance = np.array([1800.0, 900.0, 40.0])[group] * rng.lognormal(0, 0.3, n)
    age = np.array([22, 55, 38])[group] + rng.integers(-5, 6, n)
    student = np.where(rng.random(n) < np.array([0.9, 0.05, 0.3])[group], "true", "false")
    region = np.array(["East", "West", "South"])[(group + (rng.random(n) < 0.2)) % 3]

    def text(values, missing_share):
        values = [str(value) for value in values]
        return [None if rng.random() < missing_share else value for value in values]

    frame = pd.DataFrame({
        "customer_id": [f"c{number:05d}" for number in range(n)],
        "income": text(np.round(income, 2), 0.03),
        "balance": text(np.round(balance, 2), 0.03),
        "age": text(age, 0.02),
        "student": text(student, 0.04),
        "region": text(region, 0.05),
        "channel": text(rng.choice(["web", "store", "phone"], n), 0.1),
    })
    frame.loc[17, ["income", "balance", "age"]] = ["900.5", "250000", "99"]  # the outlier
    return frame


def fit(customers: pd.DataFrame, features=("income", "balance", "age", "student", "region"), **overrides):
    settings = load_settings(
        dataset=DECLARATION, features=list(features), k=3,
        gap_references=0, stability_resamples=0, fit_sample_size=1_000, selection_sample_size=1_000,
        write_report=False, **overrides,
    )
    sample = customers.sample(1_000, random_state=1).sort_values("customer_id").reset_index(drop=True)
    return fitting.segment(sample, len(customers), settings, None, 1), settings.declaration


def in_database(engine, fitted, dataset, customers):
    """The per-customer rows and statistics of the SQL assignment of `customers` (rolled back)."""
    db.upgrade(engine)
    with engine.begin() as connection:
        relation = staging.create(connection, RUN_ID)
        staging.write_frames(connection, relation, [customers], dataset)
        written = assignment.write_generation(connection, fitted, dataset, relation, RUN_ID, 1, None)
        rows = pd.read_sql_query(
            sa.text(f"select * from segmentation_internal.current_segments_g{RUN_ID} order by customer_id"), connection
        )
        statistics = assignment.statistics(
            connection, sql.SQL("select segment_id, is_outlier, attributes from {}").format(
                assignment.generation_table(RUN_ID)), fitted.encoder, dataset,
        )
        connection.rollback()
    assert written == len(customers)
    return rows, statistics


def test_the_sql_assignment_equals_the_python_one_with_categories_missing_values_logs_and_an_outlier(engine):
    customers = planted_customers()
    fitted, dataset = fit(customers)
    encoded = fitted.encoder.transform(customers, dataset)
    expected = clustering.assign(fitted.model, encoded.matrix, fitted.ids_by_label, fitted.fences)
    rows, statistics = in_database(engine, fitted, dataset, customers)

    assert rows["customer_id"].tolist() == customers["customer_id"].tolist()
    assert (rows["run_id"] == RUN_ID).all() and (rows["generation_id"] == RUN_ID).all()
    assert (rows["since_run_id"] == RUN_ID).all() and rows["previous_segment_id"].isna().all()
    assert rows["segment_id"].tolist() == expected.segment_ids.tolist()
    assert rows["second_segment_id"].tolist() == expected.second_ids.tolist()
    # float64 on both sides; only ln(1 + x) against numpy's log1p(x) may differ, in the last bit
    np.testing.assert_allclose(rows["distance_to_centroid"], expected.distances, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(rows["margin_to_second"], expected.margins, rtol=1e-12, atol=1e-12)
    assert rows["is_outlier"].tolist() == expected.is_outlier.tolist()
    assert rows.loc[17, "is_outlier"] and rows["is_outlier"].sum() < 30
    stored = rows["attributes"].map(list).tolist()
    assert stored == customers[dataset.names].astype(object).where(customers[dataset.names].notna(), None).values.tolist()

    python = SegmentStatistics(dataset)
    python.add(customers, encoded.unscaled, expected.segment_ids, expected.is_outlier, encoded.n_imputed)
    pd.testing.assert_series_equal(statistics.counts.sort_index(), python.counts.sort_index(), check_names=False, check_index_type=False)
    assert statistics.outliers.sort_index().tolist() == python.outliers.sort_index().tolist()
    assert statistics.n_imputed == python.n_imputed
    assert statistics.n_imputed["income"] > 0 and statistics.n_imputed["student"] > 0
    columns = fitted.encoder.columns  # the Python sums hold them in alphabetical order
    assert statistics.centroid_sums.columns.tolist() == columns
    np.testing.assert_allclose(statistics.centroids().sort_index().to_numpy(),
                               python.centroids().sort_index()[columns].to_numpy(), rtol=1e-12)
    python_spread = pd.Series(python.spread(), index=python.centroid_sums.columns)[columns]
    np.testing.assert_allclose(statistics.spread(), python_spread.to_numpy(), rtol=1e-10)
    for name in ("income", "balance", "age"):
        np.testing.assert_allclose(statistics.numeric[name].sort_index().to_numpy(dtype=float),
                                   python.numeric[name].sort_index().to_numpy(dtype=float), rtol=1e-12)
        assert statistics.squares[name] == pytest.approx(python.squares[name], rel=1e-12)
        assert statistics.raw_squares[name] == pytest.approx(python.raw_squares[name], rel=1e-12)
    for name in ("student", "region", "channel"):
        ours = statistics.category_counts[name].sort_index()
        theirs = python.category_counts[name].sort_index()
        assert ours.to_numpy(dtype=float).tolist() == theirs[ours.columns].to_numpy(dtype=float).tolist()
    assert "(missing)" in statistics.category_counts["region"].columns
    assert statistics.category_counts["channel"].to_numpy().sum() == len(customers)


def test_without_a_log_column_the_sql_distances_equal_the_python_ones_to_the_last_bit(engine):
    customers = planted_customers(n=1_500, seed=8)
    fitted, dataset = fit(customers, features=("income", "age", "student", "region"), scaling="robust")
    encoded = fitted.encoder.transform(customers, dataset)
    expected = clustering.assign(fitted.model, encoded.matrix, fitted.ids_by_label, fitted.fences)
    rows, _ = in_database(engine, fitted, dataset, customers)
    assert rows["segment_id"].tolist() == expected.segment_ids.tolist()
    assert rows["distance_to_centroid"].tolist() == expected.distances.tolist()
    assert rows["margin_to_second"].tolist() == expected.margins.tolist()


def test_equally_near_centroids_go_to_the_lowest_label_in_sql_and_in_python(engine):
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "income": ["1", "3", "2", "0"],
                              "balance": None, "age": None, "student": None, "region": None,
                              "channel": None})
    dataset = parse_dataset(DECLARATION)
    # one feature, unscaled; centres 0, 2 and 4 (labels 0, 1, 2); 1 and 3 lie halfway between two
    encoder = features.fit_encoder(customers, dataset, ["income"], "none")
    fitted = types.SimpleNamespace(
        model=types.SimpleNamespace(cluster_centers_=np.array([[0.0], [2.0], [4.0]])), encoder=encoder,
        ids_by_label=np.array([30, 10, 20]), fences=np.array([np.inf, 0.5, np.inf]),
    )
    expected = clustering.assign(fitted.model, encoder.transform(customers, dataset).matrix, fitted.ids_by_label,
                                 fitted.fences)
    rows, _ = in_database(engine, fitted, dataset, customers)
    assert expected.segment_ids.tolist() == [30, 10, 10, 30]
    assert expected.second_ids.tolist() == [10, 20, 30, 10]
    assert rows["segment_id"].tolist() == expected.segment_ids.tolist()
    assert rows["second_segment_id"].tolist() == expected.second_ids.tolist()
    assert rows["margin_to_second"].tolist() == [0.0, 0.0, 2.0, 2.0]
    assert rows["is_outlier"].tolist() == [False, True, False, False]
