"""Features, choice of k, stable ids and profiles on hand-made data with known answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from segmentation import clustering, features, model_selection, profiling


def customers_frame(rows):
    return pd.DataFrame(rows, columns=["customer_id", "gender", "age", "annual_income_k", "spending_score"])


def test_missing_values_are_imputed_with_the_median_and_counted():
    customers = customers_frame(
        [(1, "Female", 20.0, 10.0, 5.0), (2, None, np.nan, 30.0, 7.0), (3, "Male", 40.0, np.nan, 9.0)]
    )
    frame, imputed = features.feature_frame(customers, ["age", "annual_income_k", "gender"])
    assert imputed == {"age": 1, "annual_income_k": 1, "gender": 1}
    assert frame["age"].tolist() == [20.0, 30.0, 40.0]
    assert frame["annual_income_k"].tolist() == [10.0, 30.0, 20.0]
    assert frame["gender"].tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize("true_k", [3, 4, 6])
def test_choose_k_finds_the_number_of_well_separated_blobs(true_k):
    # centres on a circle of radius 20, blobs of spread 1: clearly true_k groups
    angles = np.linspace(0, 2 * np.pi, true_k, endpoint=False)
    centres = np.column_stack([20 * np.cos(angles), 20 * np.sin(angles)])
    points, _ = make_blobs(n_samples=600, centers=centres, cluster_std=1.0, random_state=3)
    table = model_selection.evaluate_candidates(points, range(2, 11), random_state=0, n_init=10)
    k, rationale = model_selection.choose_k(table)
    assert k == true_k
    assert rationale.startswith(f"k = {true_k}:")
    assert {"silhouette", "davies_bouldin", "calinski_harabasz", "gap", "gap_sd", "stability_ari", "is_elbow"} <= set(table.columns)
    assert table["inertia"].is_monotonic_decreasing


def test_elbow_of_a_sharp_inertia_curve_is_found():
    assert model_selection.find_elbow([1, 2, 3, 4, 5, 6], [100, 40, 12, 10, 9, 8.5]) == 3


def evaluation_table(**columns):
    base = {
        "k": [2, 3, 4],
        "inertia": [10.0, 5.0, 4.0],
        "silhouette": [0.60, 0.59, 0.40],
        "davies_bouldin": [0.5, 0.6, 0.9],
        "calinski_harabasz": [1.0, 2.0, 1.5],
        "gap": [0.1, 0.5, 0.505],
        "gap_sd": [0.01, 0.01, 0.01],
        "stability_ari": [0.95, 0.95, 0.95],
        "is_elbow": [False, True, False],
    }
    base.update(columns)
    table = pd.DataFrame(base)
    table["gap_choice"] = table["k"] == model_selection.gap_choice(table)
    return table


def test_the_k_with_most_criteria_votes_wins():
    # silhouette and Davies-Bouldin vote 2; elbow, Calinski-Harabasz and gap vote 3
    k, rationale = model_selection.choose_k(evaluation_table())
    assert k == 3
    assert "chosen by 3 of 5 criteria" in rationale and "Other criteria preferred: silhouette 2" in rationale


def test_an_unstable_candidate_cannot_win():
    k, rationale = model_selection.choose_k(evaluation_table(stability_ari=[0.95, 0.40, 0.95]))
    assert k == 2
    assert "stable (mean ARI 0.95" in rationale


def test_gap_rule_takes_the_smallest_k_within_one_standard_error():
    table = evaluation_table(gap=[0.1, 0.5, 0.52], gap_sd=[0.01, 0.05, 0.05])
    assert model_selection.gap_choice(table) == 3


def test_seeded_sample_is_reproducible_and_bounded():
    values = np.arange(1000).reshape(-1, 1)
    first = model_selection.seeded_sample(values, 100, random_state=5)
    assert len(first) == 100
    assert np.array_equal(first, model_selection.seeded_sample(values, 100, random_state=5))


def test_first_run_numbers_segments_by_size_whatever_the_label_order():
    centroids = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]])
    sizes = np.array([10, 30, 20])
    ids = clustering.stable_segment_ids(centroids, sizes, np.ones(2), None)
    assert ids.tolist() == [3, 1, 2]
    permutation = [2, 0, 1]
    permuted = clustering.stable_segment_ids(centroids[permutation], sizes[permutation], np.ones(2), None)
    assert permuted.tolist() == [ids[label] for label in permutation]


def test_later_runs_keep_the_id_of_the_nearest_previous_segment():
    previous = {7: np.array([10.0, 80.0]), 3: np.array([90.0, 20.0])}
    centroids = np.array([[88.0, 22.0], [12.0, 79.0], [50.0, 50.0]])
    ids = clustering.stable_segment_ids(centroids, np.array([5, 5, 90]), np.array([25.0, 25.0]), previous, 9)
    assert ids.tolist() == [3, 7, 9]


def test_assign_gives_nearest_centroid_and_its_distance():
    model = clustering.fit_kmeans(np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]]), 2,
                                  random_state=0, n_init=5)
    ids = np.array([100, 200])
    result = clustering.assign(model, np.array([[0.0, 0.5], [10.0, 3.5]]), ids)
    assert result.segment_ids[0] != result.segment_ids[1]
    assert result.distances.tolist() == pytest.approx([0.0, 3.0])


def test_kmeans_with_a_fixed_seed_is_reproducible():
    points, _ = make_blobs(n_samples=300, centers=4, random_state=1)
    first = clustering.fit_kmeans(points, 4, random_state=42, n_init=10).labels_
    second = clustering.fit_kmeans(points, 4, random_state=42, n_init=10).labels_
    assert adjusted_rand_score(first, second) == 1.0


@pytest.mark.parametrize(
    ("income", "spending", "name", "keyword"),
    [
        ("high", "high", "High income, high spending", "Premium"),
        ("low", "low", "Low income, low spending", "Budget"),
        ("high", "low", "High income, low spending", "Win them over"),
        ("average", "average", "Average income, average spending", "Standard"),
    ],
)
def test_names_and_recommendations_follow_from_levels(income, spending, name, keyword):
    levels = {"annual_income_k": income, "spending_score": spending}
    assert profiling.segment_name(levels) == name
    assert keyword in profiling.recommendation(levels)


def test_names_work_for_any_feature_set():
    levels = {"spending_score": "high", "age": "low", "gender": "high"}
    assert profiling.segment_name(levels) == "High spending, younger, mostly female"
    assert "social media" in profiling.recommendation(levels)


def test_profiles_shares_sum_to_one_and_names_are_unique():
    rng = np.random.default_rng(0)
    customers = customers_frame(
        [(i, "Female" if i % 3 else "Male", 20 + i % 50, 50.0 + rng.normal(), 50.0 + rng.normal()) for i in range(1, 101)]
    )
    frame, _ = features.feature_frame(customers, ["annual_income_k", "spending_score"])
    segment_ids = np.array([1, 2, 3, 4] * 25)
    table = profiling.profile_segments(customers, frame, segment_ids)
    assert table["customer_share"].sum() == pytest.approx(1.0)
    assert table["customer_count"].sum() == 100
    assert table["segment_name"].is_unique
    assert table["female_share"].between(0, 1).all()
