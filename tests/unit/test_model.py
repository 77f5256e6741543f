"""Features, choice of k, stable ids and profiles on hand-made data with known answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from segmentation import features, profiling
from segmentation.dataset import MALL
from segmentation.model import clustering
from segmentation.model import selection as model_selection


def customers_frame(rows):
    """A customers frame as the pipeline reads it: ids and declared columns as text."""
    frame = pd.DataFrame(rows, columns=["customer_id", "gender", "age", "annual_income_k", "spending_score"])
    frame = frame.astype(object).where(frame.notna(), None)
    for column in ("customer_id", "age", "annual_income_k", "spending_score"):
        frame[column] = [None if value is None else str(value) for value in frame[column]]
    return frame


def test_missing_numbers_are_imputed_with_the_median_and_counted():
    customers = customers_frame(
        [(1, "Female", 20, 10.0, 5), (2, None, None, 30.0, 7), (3, "Male", 40, None, 9)]
    )
    encoded = features.encode(customers, MALL, ["age", "annual_income_k", "gender"], "none")
    assert encoded.n_imputed == {"age": 1, "annual_income_k": 1, "gender": 0}
    assert encoded.unscaled["age"].tolist() == [20.0, 30.0, 40.0]
    assert encoded.unscaled["annual_income_k"].tolist() == [10.0, 30.0, 20.0]
    # a missing category is a category of its own
    assert encoded.columns == ["age", "annual_income_k", "gender=(missing)", "gender=Female", "gender=Male"]


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
    assert {"silhouette", "reference_silhouette", "reference_silhouette_max", "silhouette_gain", "davies_bouldin",
            "calinski_harabasz", "gap", "gap_sd", "stability_ari", "is_elbow"} <= set(table.columns)
    assert table["inertia"].is_monotonic_decreasing


def test_elbow_of_a_sharp_inertia_curve_is_found():
    assert model_selection.find_elbow([1, 2, 3, 4, 5, 6], [100, 40, 12, 10, 9, 8.5]) == 3


def evaluation_table(**columns):
    base = {
        "k": [2, 3, 4, 5],
        "inertia": [10.0, 5.0, 4.0, 3.5],
        "silhouette": [0.50, 0.52, 0.45, 0.40],
        "reference_silhouette": [0.30, 0.20, 0.19, 0.18],
        "reference_silhouette_max": [0.35, 0.22, 0.21, 0.20],
        "davies_bouldin": [0.5, 0.6, 0.9, 1.0],
        "calinski_harabasz": [1.0, 2.0, 1.5, 1.2],
        "gap": [0.1, 0.5, 0.505, 0.51],
        "gap_sd": [0.01, 0.01, 0.01, 0.01],
        "stability_ari": [0.95, 0.95, 0.95, 0.95],
        "is_elbow": [False, True, False, False],
    }
    base.update(columns)
    table = pd.DataFrame(base)
    table["silhouette_gain"] = table["silhouette"] - table["reference_silhouette"]
    table["gap_choice"] = table["k"] == model_selection.gap_choice(table)
    return table


def test_the_largest_silhouette_gain_over_the_reference_wins_not_the_largest_silhouette():
    # k = 2 has the best silhouette after 3, but structureless data splits in two nearly as well
    k, rationale = model_selection.choose_k(evaluation_table(silhouette=[0.55, 0.52, 0.45, 0.40]))
    assert k == 3
    assert rationale.startswith("k = 3: the largest silhouette gain (0.320)")
    assert "k = 2 (0.250) does not stand out" not in rationale  # 0.25 is below 0.32: nothing to explain
    assert "silhouette 0.520 against 0.200 on the shuffled reference" in rationale


def test_the_fewest_segments_within_a_tenth_of_the_best_gain_are_chosen():
    k, rationale = model_selection.choose_k(evaluation_table(silhouette=[0.40, 0.52, 0.49, 0.52]))
    # gains 0.10, 0.32, 0.30, 0.34: the best is 5; 3 is within a tenth of it (0.034)
    assert k == 3
    assert "the fewest segments within 0.034 of the largest silhouette gain (0.340 at k = 5): 0.320" in rationale


def test_the_previous_runs_k_stays_while_it_is_within_the_tolerance():
    table = evaluation_table(silhouette=[0.40, 0.52, 0.49, 0.52])  # gains 0.10, 0.32, 0.30, 0.34
    k, rationale = model_selection.choose_k(table, previous_k=5)
    assert k == 5
    assert rationale.startswith("k = 5: the largest silhouette gain (0.340), as in the previous published run; k = 3"
                                " (0.320) is within 0.034 of it")
    nearer = evaluation_table(silhouette=[0.40, 0.52, 0.51, 0.52])  # gains 0.10, 0.32, 0.32, 0.34
    k, rationale = model_selection.choose_k(nearer, previous_k=4)
    assert k == 4 and "as in the previous published run: its silhouette gain 0.320 is within 0.034" in rationale
    # a previous k outside the tolerance does not stay (0.30 and 0.10 against 0.34)
    assert model_selection.choose_k(table, previous_k=4)[0] == model_selection.choose_k(table, previous_k=2)[0] == 3


def test_two_segments_only_when_two_groups_stand_out():
    close = evaluation_table(silhouette=[0.60, 0.52, 0.45, 0.40], reference_silhouette=[0.25, 0.20, 0.19, 0.18])
    k, rationale = model_selection.choose_k(close)  # gains 0.35 and 0.32: 2 is best, not by a fifth
    assert k == 3
    assert "k = 2 (0.350) does not stand out by more than 0.035, so it is not taken for two groups" in rationale
    clear = evaluation_table(silhouette=[0.80, 0.52, 0.45, 0.40], reference_silhouette=[0.25, 0.20, 0.19, 0.18])
    k, rationale = model_selection.choose_k(clear)  # 0.55 against at most 0.32
    assert k == 2
    assert rationale.startswith("k = 2: two groups stand out: silhouette gain 0.550, more than 0.055 above every"
                                " larger k (next best 0.320 at k = 3)")


def test_an_unstable_candidate_cannot_win():
    k, rationale = model_selection.choose_k(evaluation_table(stability_ari=[0.95, 0.40, 0.95, 0.95]))
    assert k == 4
    assert "stable (mean ARI 0.95" in rationale
    assert "Not eligible (not stable: mean ARI under 0.75 over resamples): k = 3 (0.40)." in rationale


def test_the_rationale_says_when_the_best_k_is_the_largest_tried():
    rising = evaluation_table(silhouette=[0.40, 0.45, 0.55, 0.70])
    k, rationale = model_selection.choose_k(rising, k_max=5, k_ceiling=5)
    assert k == 5
    assert "k = 5 is the largest k tried: more segments might fit better still" in rationale


def test_the_search_goes_on_past_k_max_while_the_gain_still_rises():
    # eight tight groups on a circle: with k_max = 4 the best gain is at the edge
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    centres = np.column_stack([20 * np.cos(angles), 20 * np.sin(angles)])
    points, _ = make_blobs(n_samples=800, centers=centres, cluster_std=1.0, random_state=3)
    table, models, k, rationale = model_selection.search(
        points, 2, 4, 12, random_state=0, n_init=4, gap_references=4, stability_resamples=3)
    assert k == 8
    assert set(models) == set(table["k"]) and table["k"].max() in (10, 13)
    assert "The best k was at the upper edge of the range (k_max = 4) and the gain still rose, so the search went" \
        f" on to k = {table['k'].max()}." in rationale
    capped = model_selection.search(points, 2, 4, 7, random_state=0, n_init=4, gap_references=4, stability_resamples=3)
    assert capped[2] == 7 and "(the cap, k_ceiling = 7)" in capped[3] and "k = 7 is the largest k tried" in capped[3]


def test_gap_rule_takes_the_smallest_k_within_one_standard_error():
    table = evaluation_table(gap=[0.1, 0.5, 0.52, 0.53], gap_sd=[0.01, 0.05, 0.05, 0.05])
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


def _profiles(features_used, rows, segment_ids, rules=MALL.rules):
    customers = customers_frame(rows)
    encoded = features.encode(customers, MALL, features_used, "standard")
    return profiling.profile_segments(customers, MALL, features_used, encoded.unscaled, np.asarray(segment_ids), rules)


def _quadrant_rows():
    """Four groups of 25: (high income, high spending), (low, low), (high, low), (average, average)."""
    centres = {1: (90, 85), 2: (20, 15), 3: (90, 15), 4: (55, 50)}
    rng = np.random.default_rng(1)
    rows, ids = [], []
    for number in range(100):
        segment = number % 4 + 1
        income, spending = centres[segment]
        rows.append((number + 1, "Female" if number % 3 else "Male", 30 + number % 30,
                     round(income + rng.normal(), 2), int(spending + rng.integers(-2, 3))))
        ids.append(segment)
    return rows, ids


@pytest.mark.parametrize(
    ("segment_id", "name", "keyword"),
    [(1, "High income, high spending", "Premium"), (2, "Low income, low spending", "Budget"),
     (3, "High income, low spending", "Win them over"), (4, "Average income, average spending", "Standard")],
)
def test_mall_names_and_recommendations_follow_from_levels(segment_id, name, keyword):
    rows, ids = _quadrant_rows()
    profiles, _ = _profiles(["annual_income_k", "spending_score"], rows, ids)
    row = profiles.set_index("segment_id").loc[segment_id]
    assert row["segment_name"] == name
    assert keyword in row["recommendation"]


def test_advice_never_speaks_of_a_feature_the_run_did_not_use():
    rows, ids = _quadrant_rows()
    profiles, _ = _profiles(["spending_score"], rows, ids)
    for text in profiles["recommendation"]:
        assert "income" not in text.lower() and "premium" not in text.lower()


def test_profiles_shares_sum_to_one_and_names_are_unique():
    rng = np.random.default_rng(0)
    rows = [(i, "Female" if i % 3 else "Male", 20 + i % 50, 50.0 + rng.normal(), 50 + i % 3) for i in range(1, 101)]
    profiles, long = _profiles(["annual_income_k", "spending_score"], rows, [1, 2, 3, 4] * 25)
    assert profiles["customer_share"].sum() == pytest.approx(1.0)
    assert profiles["customer_count"].sum() == 100
    assert profiles["segment_name"].is_unique  # four near-identical segments still get four names
    shares = long[long["feature"] == "gender"].groupby("segment_id")["mean"].sum()
    assert shares.to_numpy() == pytest.approx(np.ones(4))


def test_scoring_the_candidates_in_parallel_gives_the_same_table_as_one_at_a_time():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 6.0]])
    scaled = np.vstack([centre + rng.normal(0, 1, (1_000, 2)) for centre in centres])
    settings = dict(random_state=7, n_init=2, gap_references=2, stability_resamples=2)
    one = model_selection.evaluate_candidates(scaled, range(2, 6), n_jobs=1, **settings)
    both = model_selection.evaluate_candidates(scaled, range(2, 6), n_jobs=2, **settings)
    assert len(scaled) >= model_selection.PARALLEL_FROM_ROWS
    pd.testing.assert_frame_equal(one, both)
    assert one.loc[one["silhouette_gain"].idxmax(), "k"] == 3


def test_silhouettes_of_many_labelings_at_once_equal_scikit_learns():
    from sklearn.metrics import silhouette_score

    points, truth = make_blobs(n_samples=2_500, centers=4, cluster_std=2.0, random_state=5)
    labelings = [truth, np.arange(len(points)) % 3, np.where(np.arange(len(points)) == 7, 9, truth), np.zeros(len(points))]
    ours = model_selection.silhouette_scores(points, labelings)
    for labels, value in zip(labelings[:3], ours):  # the third has a one-member cluster
        assert value == pytest.approx(silhouette_score(points, labels), abs=1e-6)
    assert ours[3] is None  # one group: no silhouette


def test_a_fit_on_a_seeded_sample_assigns_customers_as_a_fit_on_all_of_them():
    from segmentation import pipeline
    from segmentation.settings import load_settings

    # five planted groups of 40,000 customers (income, spending), overlapping like the mall's
    rng = np.random.default_rng(11)
    centres = np.array([[55, 50], [87, 82], [88, 17], [26, 21], [26, 79]])
    group = rng.choice(5, size=40_000, p=[0.4, 0.2, 0.18, 0.11, 0.11])
    values = np.round(centres[group] + rng.normal(0, 9, (len(group), 2)))
    customers = customers_frame(
        [(number, "Female", 30, income, spending) for number, (income, spending) in enumerate(values.tolist())]
    )
    settings = load_settings(k=5, fit_sample_size=4_000, selection_sample_size=2_000, gap_references=0,
                             stability_resamples=0, write_report=False)
    sample = customers.iloc[model_selection.seeded_sample(np.arange(len(customers)), 4_000, 42)]
    fitted = pipeline.segment(sample.reset_index(drop=True), len(customers), settings, None, 1)
    everyone = fitted.encoder.transform(customers, MALL)
    sampled = clustering.assign(fitted.model, everyone.matrix, fitted.ids_by_label, fitted.fences)
    full = clustering.fit_kmeans(everyone.matrix, 5, random_state=42, n_init=10)

    assert len(fitted.sample) == 4_000
    assert adjusted_rand_score(full.labels_, sampled.labels) > 0.99
    # each sampled centre lies within 0.05 standard deviations of the full fit's nearest centre
    gaps = np.sqrt(((fitted.model.cluster_centers_[:, None, :] - full.cluster_centers_[None]) ** 2).sum(axis=2))
    assert gaps.min(axis=1).max() < 0.05


def test_the_sql_sum_adds_in_numpys_order_so_distances_agree_to_the_last_bit():
    from psycopg import sql

    from segmentation.publish.assignment import numpy_sum

    rng = np.random.default_rng(2)
    for width in (2, 5, 8, 13, 20):
        squares = rng.normal(size=(5_000, 1, width)) ** 2 * 10.0 ** rng.integers(-3, 4, size=width)
        expression = numpy_sum([sql.SQL(f"t[:, 0, {index}]") for index in range(width)]).as_string(None)
        assert eval(expression, {"t": squares}).tolist() == squares.sum(axis=2)[:, 0].tolist(), width


def test_a_few_rows_more_or_less_give_the_same_k():
    # four overlapping groups in five columns, two of which overlap so much that three stand out
    points, _ = make_blobs(n_samples=800, centers=4, n_features=5, cluster_std=2.5, random_state=11)
    rng = np.random.default_rng(0)
    variants = [points, np.delete(points, rng.choice(800, 8, replace=False), axis=0),
                np.vstack([points, points[rng.choice(800, 8, replace=False)] + rng.normal(0, 0.1, (8, 5))])]
    chosen = {model_selection.search(variant, 2, 10, 12, random_state=42, n_init=5, gap_references=5,
                                     stability_resamples=4)[2] for variant in variants}
    assert chosen == {3}
