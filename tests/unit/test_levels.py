"""Levels, names and advice agree with the figures published beside them: a table of cases."""

import numpy as np
import pandas as pd
import pytest

from segmentation import display, features, profiling
from segmentation.dataset import parse_dataset
from segmentation.profiling import levels

SHOP = parse_dataset({"id_column": "id", "columns": {
    "repeat_purchases": {"type": "whole", "min": 0, "transform": "log", "label": "repeat purchases"},
    "spend": {"type": "number", "min": 0, "transform": "log", "better": "higher"},
    "age": {"type": "whole", "min": 0, "words": ["younger", "older"]},
    "housing": {"type": "category"},
    "student": {"type": "boolean", "label": "students"},
    "score": {"type": "number"},  # may go below zero: judged in standard deviations only
    "churned": {"type": "boolean", "label": "churners", "better": "lower"},
}})


def profile(columns: dict[str, list], segment_ids: list[int], used: list[str] | None = None):
    """(profiles, long table) of hand-made customers, as the pipeline computes them."""
    n = len(segment_ids)
    frame = pd.DataFrame({"customer_id": [str(i) for i in range(n)]})
    for column in SHOP.columns:
        values = columns.get(column.name, ["1"] * n if column.is_numeric else ["a"] * n)
        frame[column.name] = [None if value is None else str(value).lower() if column.type == "boolean" else str(value)
                              for value in values]
    used = used or list(columns)
    encoded = features.encode(frame, SHOP, used, "standard")
    return profiling.profile_segments(frame, SHOP, used, encoded.unscaled, np.asarray(segment_ids))


def row(long, segment_id, feature, category=None):
    rows = long[(long["segment_id"] == segment_id) & (long["feature"] == feature)]
    rows = rows[rows["category"].isna()] if category is None else rows[rows["category"] == category]
    return rows.iloc[0]


def test_a_zero_heavy_column_far_below_its_average_is_low_not_average():
    # segment 1: 80% zeros, mean 0.24; segment 2: the repeat buyers (mean 2.18): index 20 for segment 1
    ones = [0] * 80 + [1] * 16 + [2] * 4
    twos = [0] * 20 + [1] * 20 + [2] * 20 + [3] * 20 + [4] * 2 + [5] * 18
    _, long = profile({"repeat_purchases": ones + twos}, [1] * 100 + [2] * 100)
    low = row(long, 1, "repeat_purchases")
    assert low["mean"] == pytest.approx(0.24) and round(low["index_value"]) == 20
    assert low["level"] == "low" and row(long, 2, "repeat_purchases")["level"] == "high"


def test_a_skewed_column_four_percent_above_average_is_average():
    rng = np.random.default_rng(1)
    spend = np.round(rng.lognormal(4, 1.2, 400), 2)
    spend[:200] *= 1.04 / spend[:200].mean() * spend[200:].mean()  # segment 1's mean 4% above segment 2's
    _, long = profile({"spend": spend}, [1] * 200 + [2] * 200)
    first = row(long, 1, "spend")
    assert 101 < first["index_value"] < 103
    assert first["level"] == "average"


@pytest.mark.parametrize(("shares", "overall_share", "expected"), [
    ((0.0, 0.2), 0.10, "low"),       # none of a category a tenth of customers have: never "average"
    ((0.23, 0.30), 0.265, "average"),  # close to the overall share
    ((0.60, 0.10), 0.35, "high"),
    ((0.12, 0.08), 0.10, "average"),  # 2 points apart: too close to count, whatever the ratio
])
def test_a_category_share_far_from_its_overall_share_is_never_average(shares, overall_share, expected):
    n = 200
    values = []
    for share in shares:
        hits = round(share * n)
        values += ["own"] * hits + ["rent"] * (n - hits)
    _, long = profile({"housing": values}, [1] * n + [2] * n)
    first = row(long, 1, "housing", "own")
    assert first["overall_mean"] == pytest.approx(overall_share)
    assert first["level"] == expected


@pytest.mark.parametrize(("shares", "word"), [
    ({"rent": 0.70, "own": 0.30}, "housing: mostly rent"),
    ({"rent": 0.45, "own": 0.30, "parents": 0.25}, "housing: often rent"),  # more than overall, not a majority
    ({"own": 1.0}, "housing: mostly own"),
])
def test_mostly_is_said_only_for_a_majority_and_always_with_the_column(shares, word):
    n = 100
    segment = [value for value, share in shares.items() for _ in range(round(share * n))]
    others = ["own"] * 70 + ["parents"] * 30 if "parents" in shares else ["own"] * 80 + ["rent"] * 20
    if shares == {"own": 1.0}:
        others = ["rent"] * 60 + ["own"] * 40
    profiles, long = profile({"housing": segment + others}, [1] * n + [2] * n)
    name = profiles.set_index("segment_id").loc[1, "segment_name"]
    assert name == word[:1].upper() + word[1:]


def test_a_boolean_is_mostly_only_above_half_and_none_when_absent():
    students = [True] * 40 + [False] * 60 + [False] * 200 + [True] * 40 + [False] * 10  # 22.9% overall
    profiles, long = profile({"student": students}, [1] * 100 + [2] * 200 + [3] * 50)
    names = profiles.set_index("segment_id")["segment_name"]
    assert row(long, 1, "student", "true")["mean"] == pytest.approx(0.4)
    assert names[1] == "More students"  # above the overall share, but not a majority of the segment
    assert names[2] == "No students" and names[3] == "Mostly students"


def test_declared_words_name_the_ends_of_a_number():
    ages = [25] * 50 + [60] * 50 + [40] * 50
    profiles, _ = profile({"age": ages}, [1] * 50 + [2] * 50 + [3] * 50)
    names = profiles.set_index("segment_id")["segment_name"]
    assert names[1] == "Younger" and names[2] == "Older" and names[3] == "Average age"


def test_a_level_is_never_on_the_wrong_side_of_the_all_customer_figure():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = 300
        segment_ids = rng.integers(1, 5, n)
        columns = {
            "repeat_purchases": rng.poisson(rng.uniform(0.1, 3), n) * (rng.random(n) < 0.6),
            "spend": np.round(rng.lognormal(3, 1.5, n), 2),
            "age": rng.integers(18, 90, n),
            "housing": rng.choice(["own", "rent", "parents"], n, p=[0.5, 0.4, 0.1]),
            "student": rng.random(n) < 0.2,
            "score": np.round(rng.normal(0, 5, n), 3),
        }
        _, long = profile(columns, list(segment_ids))
        for item in long.itertuples():
            if item.level == "high":
                assert item.mean > item.overall_mean, (trial, item)
            elif item.level == "low":
                assert item.mean < item.overall_mean, (trial, item)
            if item.level == "average" and pd.notna(item.category) and item.overall_mean > 0:
                # far from the overall share is never average: at most 25% above, 20% below, or within 5 points
                assert abs(item.mean - item.overall_mean) < levels.SHARE_POINTS or \
                    0.8 < item.mean / item.overall_mean < 1.25


def test_a_number_that_can_go_below_zero_is_judged_in_standard_deviations_only():
    # index 150 (mean 3 against 2), but a tenth of a standard deviation: a column without min >= 0 has no ratio
    scores = list(np.linspace(-18, 24, 100)) + list(np.linspace(-20, 22, 100))
    _, long = profile({"score": scores}, [1] * 100 + [2] * 100)
    assert row(long, 1, "score")["level"] == "average"


def test_names_use_the_strongest_differences_when_more_than_three_features():
    n = 100
    columns = {
        "age": [40] * (2 * n),
        "score": [0.0] * (2 * n),
        "spend": [100] * n + [300] * n,          # strongest
        "repeat_purchases": [1] * n + [1] * n,   # no difference
        "student": [False] * n + [True] * n,     # strong
    }
    profiles, _ = profile(columns, [1] * n + [2] * n)
    names = profiles.set_index("segment_id")["segment_name"]
    assert names[1] == "Low spend, no students" and names[2] == "High spend, mostly students"


def test_advice_without_rules_builds_on_strengths_and_works_on_weaknesses():
    n = 100
    columns = {"spend": [500] * n + [20] * n + [100] * n,
               "churned": [False] * n + [True] * 80 + [False] * 20 + [False] * 90 + [True] * 10,
               "student": [False] * n + [False] * n + [True] * n}
    profiles, _ = profile(columns, [1] * n + [2] * n + [3] * n)
    advice = profiles.set_index("segment_id")["recommendation"]
    assert advice[1].startswith("Valuable customers (no churners and high spend): keep them loyal")
    assert advice[2].startswith("Customers to win over (low spend and mostly churners): find out why, then raise"
                                " their spend and bring the share of churners down")
    assert "Fit products, channels and messages to what they share: mostly students" in advice[3]
    assert not any("No specific rule" in text for text in advice)


def test_what_sets_a_segment_apart_shows_figures_that_differ_when_they_differ():
    # a ratio of 0.10 against 0.14: one decimal would print "0.1 vs 0.1"
    ratio = [0.10] * 100 + [0.18] * 100
    _, long = profile({"spend": ratio}, [1] * 100 + [2] * 100)
    profiles, _ = profile({"spend": ratio}, [1] * 100 + [2] * 100)
    text = profiles.set_index("segment_id").loc[1, "distinguishing_features"]
    assert text == "spend 29% below average (0.100 vs 0.140)"


@pytest.mark.parametrize(("values", "places"), [
    ([60.51, 60.54, 30.2], 2),    # three significant digits say 60.5 twice
    ([0.1, 0.14], 3),             # three significant digits of the largest: 0.100 and 0.140
    ([40027.9, 17914.7], 1),
    ([5.0, 5.0], 2),              # equal values need no more than three significant digits
    ([1.0, 1.0000001], 2),        # closer than a millionth: shown as equal
    ([], 1),
])
def test_decimals_give_three_significant_digits_and_tell_different_values_apart(values, places):
    assert display.decimals(values) == places
    shown = [display.figure(value, places) for value in values]
    assert len(set(shown)) == len({round(value, display.MAX_DECIMALS) for value in values})


def test_a_suffix_never_stays_alone():
    table = pd.DataFrame({"segment_id": [1, 2, 3], "segment_name": ["High spend", "Low spend", "Older"],
                          "customer_count": [10, 20, 30]})
    kept = profiling.keep_previous_names(table, {1: "High spend (A)", 2: "Low spend", 3: "Younger"})
    assert kept["segment_name"].tolist() == ["High spend", "Low spend", "Older"]  # no (A) without (B); no untrue name
    clash = pd.DataFrame({"segment_id": [1, 2], "segment_name": ["High spend", "High spend"], "customer_count": [5, 9]})
    assert profiling.unique_names(clash) == ["High spend (B)", "High spend (A)"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "whole", "words": ["younger"]}, "dataset.columns.age.words: two phrases for the low and the high end"),
    ({"type": "whole", "words": ["old", "old"]}, "dataset.columns.age.words: the phrases must differ"),
    ({"type": "category", "words": ["a", "b"]}, "dataset.columns.age.words: only number and whole columns"),
    ({"type": "whole", "better": "more"}, "dataset.columns.age.better: 'more' is not \"higher\" or \"lower\""),
    ({"type": "category", "better": "higher"}, "dataset.columns.age.better: only number, whole and boolean columns"),
])
def test_words_and_better_are_checked_at_start_up(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_dataset({"id_column": "id", "columns": {"age": spec}})


def test_three_words_name_the_middle_too():
    column = parse_dataset({"id_column": "id", "columns": {"duration": {
        "type": "whole", "words": ["short loans", "usual loans", "long loans"]}}}).column("duration")
    assert [column.level_word(level) for level in ("low", "average", "high")] == ["short loans", "usual loans", "long loans"]
