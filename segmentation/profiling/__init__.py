"""Segment profiles for any declared data set, with names and recommendations.

Two grains:
- `features` (long): one row per segment x declared column (x category): mean in original
  units (share 0..1 for a category or a boolean), median, index against all customers
  (100 = average), z score and level;
- `profiles` (wide): one row per segment: size, share, name, recommendation, what sets it
  apart in words, and its centroid (encoded feature -> mean before scaling).

A feature's level in a segment is its mean compared with the mean of all customers, in
standard deviations of all customers (z, on the transformed scale for `log` columns; for a
category, the category's share against its overall share): below -0.5 low, above +0.5
high, else average. Names and recommendations follow from the levels of the clustering
features only, so they never speak of a feature the run did not use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmentation.dataset import Column, Dataset, Rule
from segmentation.features import MISSING_CATEGORY
from segmentation.orders import names as rfm_names
from segmentation.profiling.statistics import SegmentStatistics, medians

LOW, AVERAGE, HIGH = "low", "average", "high"
LEVEL_THRESHOLD = 0.5
#: At most this many features make a segment's name.
NAME_FEATURES = 3
#: Category values that say nothing without their column's label.
GENERIC_VALUES = frozenset({"yes", "no", "none", "other", "unknown", "true", "false", "n/a", "na", "0", "1"})
#: |z| from which a name says "very high" / "very low" when that tells two segments apart.
VERY = 1.5


def level(z_score: float) -> str:
    """low / average / high for a segment mean `z_score` standard deviations from the overall mean."""
    if z_score < -LEVEL_THRESHOLD:
        return LOW
    if z_score > LEVEL_THRESHOLD:
        return HIGH
    return AVERAGE


def _row(segment_id, category, mean, median, overall_mean, z_score) -> dict:
    return {
        "segment_id": int(segment_id), "category": category, "mean": _float(mean), "median": _float(median),
        "index_value": None if pd.isna(mean) or not overall_mean or pd.isna(overall_mean) else float(100 * mean / overall_mean),
        "z_score": _float(z_score), "level": None if pd.isna(z_score) else level(z_score),
        "overall_mean": _float(overall_mean),
    }


def _statistics(statistics: SegmentStatistics, medians: dict[str, pd.Series], column: Column) -> list[dict]:
    """Long rows for one declared column: per segment and (for categories) per category."""
    rows = []
    if column.is_numeric:
        sums = statistics.numeric[column.name].sort_index()
        known = sums["known"].sum()
        overall_mean = sums["total"].sum() / known if known else np.nan
        overall_scaled = sums["total_transformed"].sum() / known if known else np.nan
        overall_sd = np.sqrt(max(statistics.squares[column.name] / known - overall_scaled**2, 0.0)) if known else np.nan
        segment_medians = medians.get(column.name, pd.Series(dtype=float))
        for segment_id, row in sums.iterrows():
            mean = row["total"] / row["known"] if row["known"] else np.nan
            scaled_mean = row["total_transformed"] / row["known"] if row["known"] else np.nan
            z_score = 0.0 if not overall_sd or pd.isna(overall_sd) else (scaled_mean - overall_scaled) / overall_sd
            rows.append(_row(segment_id, None, mean, segment_medians.get(segment_id), overall_mean, z_score))
        return rows
    counts = statistics.category_counts[column.name].sort_index()
    if column.type == "boolean":
        categories = ["true"]
        hits, known = {"true": counts["true"]}, counts["known"]
    else:
        seen = {str(value) for value in counts.columns}
        categories = list(column.values or ()) + sorted(seen - set(column.values or ()))
        hits = {category: counts[category] if category in counts else pd.Series(0, index=counts.index) for category in categories}
        known = counts.sum(axis=1)
    for category in categories:
        overall = hits[category].sum() / known.sum() if known.sum() else np.nan
        spread = np.sqrt(overall * (1 - overall)) if not pd.isna(overall) else np.nan
        for segment_id in counts.index:
            share = hits[category][segment_id] / known[segment_id] if known[segment_id] else np.nan
            z_score = 0.0 if not spread or pd.isna(spread) else (share - overall) / spread
            rows.append(_row(segment_id, category, share, None, overall, z_score))
    return rows


def feature_statistics(
    statistics: SegmentStatistics, medians: dict[str, pd.Series], dataset: Dataset, features: list[str]
) -> pd.DataFrame:
    """The long table: segment_id, position, feature, category, label, unit, is_clustering_feature,
    mean, median, index_value, z_score, level, overall_mean (one row per segment x column x category)."""
    rows = []
    for column in dataset.columns:
        for row in _statistics(statistics, medians, column):
            row.update(feature=column.name, label=column.label, unit=column.unit,
                       is_clustering_feature=column.name in features)
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("segment_id", kind="stable").reset_index(drop=True)
    table["position"] = table.groupby("segment_id").cumcount() + 1
    return table


def _strongest(column: Column, rows: pd.DataFrame) -> tuple[float, str, str]:
    """(|z|, level, the category or "") of a column's row that sets the segment apart most."""
    if column.type == "category":
        # a category "rises" when its share is high; the strongest rising category names it
        rising = rows[rows["z_score"] > 0]
        pick = (rising if len(rising) else rows).sort_values("z_score", ascending=False).iloc[0]
        level_name = pick["level"] if pick["level"] == HIGH else AVERAGE
        return abs(float(pick["z_score"])), level_name, str(pick["category"])
    row = rows.iloc[0]
    return abs(float(row["z_score"] or 0.0)), row["level"] or AVERAGE, ""


def feature_word(column: Column, level_name: str, category: str) -> str:
    """How a name says one feature: "high income", "younger", "mostly students", "mostly West"."""
    if column.type == "category":
        if level_name == HIGH and category != MISSING_CATEGORY:
            shown = category.lower() if column.name == "gender" else category
            if category.strip().lower() in GENERIC_VALUES or len(category.strip()) <= 2:
                shown = f"{column.label} {category}"  # "mostly internet service No", not "mostly No"
            return f"mostly {shown}"
        return "mixed gender" if column.name == "gender" else f"mixed {column.label}"
    if column.type == "boolean":
        return {HIGH: f"mostly {column.label}", LOW: f"few {column.label}", AVERAGE: f"some {column.label}"}[level_name]
    return column.level_word(level_name)


def _name_parts(dataset: Dataset, features: list[str], segment_rows: pd.DataFrame) -> list[tuple[float, str, str]]:
    """(|z|, word, feature) per clustering feature, in the order of `features`."""
    parts = []
    for name in features:
        column = dataset.column(name)
        strength, level_name, category = _strongest(column, segment_rows[segment_rows["feature"] == name])
        parts.append((strength, feature_word(column, level_name, category), name, level_name))
    return parts


def segment_name(parts: list[tuple], extra: int = 0) -> str:
    """Up to three features (all when there are at most three, else the most distinct), capitalised."""
    if extra == NAME_FEATURES:  # last resort before a suffix: say how strongly ("very high income")
        parts = [(strength, f"very {word}" if strength >= VERY and level_name != AVERAGE and word.startswith(("high", "low")) else word, name, level_name)
                 for strength, word, name, level_name in parts]
        extra = 0
    if len(parts) <= NAME_FEATURES + extra and extra == 0:
        chosen = parts
    else:
        apart = sorted(
            (part for part in parts if part[3] != AVERAGE), key=lambda part: -part[0]
        )[: NAME_FEATURES + extra]
        if not apart:
            return "Close to average on every feature"
        chosen = [part for part in parts if part in apart]
    text = ", ".join(part[1] for part in chosen)
    return text[:1].upper() + text[1:]


def _matches(rule: Rule, dataset: Dataset, features: list[str], segment_rows: pd.DataFrame) -> bool:
    for feature, wanted in rule.when:
        if feature not in features:
            return False  # never advice about a feature the run did not use
        column = dataset.column(feature)
        rows = segment_rows[segment_rows["feature"] == feature]
        if column.type == "category":
            category = column.canonical_value(wanted) or wanted
            hit = rows[rows["category"] == category]
            if hit.empty or hit.iloc[0]["level"] != HIGH:
                return False
        elif rows.empty or rows.iloc[0]["level"] != wanted:
            return False
    return True


def recommendation(
    rules: tuple[Rule, ...], dataset: Dataset, features: list[str], segment_rows: pd.DataFrame, apart: str,
    fallback: str | None = None,
) -> str:
    """First matching rule (then any matching `append` rules); else `fallback` (the RFM kind's
    advice); else a sentence on what sets it apart."""
    main = next((rule.text for rule in rules if not rule.append and _matches(rule, dataset, features, segment_rows)), None)
    main = main or fallback
    if main is None:
        strongest = "; ".join(apart.split("; ")[:2])
        main = (
            "No specific rule matches; it stands out by " + strongest + ". Tailor offers and messages to that."
            if apart != CLOSE_TO_AVERAGE
            else "Close to the average customer: standard campaigns."
        )
    extras = [rule.text for rule in rules if rule.append and _matches(rule, dataset, features, segment_rows)]
    return " ".join([main, *extras])


CLOSE_TO_AVERAGE = "close to the average on every feature"


def distinguishing_features(dataset: Dataset, features: list[str], segment_rows: pd.DataFrame) -> str:
    """The clustering features whose level is not average, strongest first, in words."""
    items = []
    for name in features:
        column = dataset.column(name)
        for row in segment_rows[segment_rows["feature"] == name].itertuples():
            if row.z_score is None or abs(row.z_score) <= LEVEL_THRESHOLD:
                continue
            if column.type == "category" and row.z_score < 0 and len(column.values or ()) > 2:
                continue  # say which categories are over-represented, not every one that is not
            items.append((abs(row.z_score), _describe_difference(column, row)))
    if not items:
        return CLOSE_TO_AVERAGE
    items.sort(key=lambda item: -item[0])
    return "; ".join(text for _, text in items)


def _describe_difference(column: Column, row) -> str:
    if column.type in ("category", "boolean"):
        if column.name == "gender":  # the mall's wording: "female share 60% against 44% overall"
            what = f"{row.category.lower()} share"
        else:
            what = f"{column.label} {row.category}" if column.type == "category" else column.label
        return f"{what} {row.mean:.0%} against {row.overall_mean:.0%} overall"
    if not row.overall_mean:
        return f"{column.label} {row.mean:.1f}"
    change = 100 * (row.mean - row.overall_mean) / abs(row.overall_mean)
    direction = "above" if change >= 0 else "below"
    return f"{column.label} {abs(change):.0f}% {direction} average ({row.mean:.1f} vs {row.overall_mean:.1f})"


def profile_segments(
    customers: pd.DataFrame,
    dataset: Dataset,
    features: list[str],
    encoded_unscaled: pd.DataFrame,
    segment_ids: np.ndarray,
    rules: tuple[Rule, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(profiles, features) of customers held in memory at once; see `profiles_from_statistics`."""
    statistics = SegmentStatistics(dataset)
    statistics.add(customers, encoded_unscaled, segment_ids, np.zeros(len(customers), dtype=bool), {})
    return profiles_from_statistics(statistics, medians(customers, segment_ids, dataset), dataset, features, rules)


def profiles_from_statistics(
    statistics: SegmentStatistics,
    segment_medians: dict[str, pd.Series],
    dataset: Dataset,
    features: list[str],
    rules: tuple[Rule, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(profiles, features) for one run from its summed statistics; see the module docstring for both grains."""
    long = feature_statistics(statistics, segment_medians, dataset, features)
    centroids = statistics.centroids()
    counts = statistics.counts
    total = statistics.total
    rows, parts_by_segment, kinds = [], {}, []
    for segment_id in sorted(counts.index):
        segment_rows = long[long["segment_id"] == segment_id]
        parts = _name_parts(dataset, features, segment_rows)
        parts_by_segment[int(segment_id)] = parts
        apart = distinguishing_features(dataset, features, segment_rows)
        kind = rfm_names.kind({part[2]: part[3] for part in parts}) if rfm_names.applies(features) else None
        kinds.append(kind)
        rows.append({
            "segment_id": int(segment_id),
            "customer_count": int(counts[segment_id]),
            "customer_share": counts[segment_id] / total,
            "segment_name": segment_name(parts),
            "distinguishing_features": apart,
            "recommendation": recommendation(
                rules, dataset, features, segment_rows, apart, rfm_names.RECOMMENDATIONS.get(kind or "")
            ),
            "centroid": {name: float(value) for name, value in centroids.loc[segment_id].items()},
            "levels": {part[2]: part[3] for part in parts},
        })
    table = pd.DataFrame(rows)
    table["segment_name"] = unique_names(table, parts_by_segment)
    if kinds and all(kinds):  # on recency, frequency and monetary value: the marketers' words
        table["segment_name"] = rfm_names.unique_names(kinds, list(table["segment_name"]))
    return table, long


def unique_names(table: pd.DataFrame, parts_by_segment: dict[int, list] | None = None) -> list[str]:
    """No two segments share a name: first name more features, then add a suffix (A, B, ... by size)."""
    names = dict(zip(table["segment_id"], table["segment_name"]))
    if parts_by_segment:
        for extra in (1, 2, NAME_FEATURES):
            clashing = {name for name in names.values() if list(names.values()).count(name) > 1}
            for segment_id, name in names.items():
                if name in clashing and (extra == NAME_FEATURES or len(parts_by_segment[segment_id]) > NAME_FEATURES):
                    names[segment_id] = segment_name(parts_by_segment[segment_id], extra)
    result = [names[segment_id] for segment_id in table["segment_id"]]
    for name in set(result):
        same = table[[value == name for value in result]].sort_values("customer_count", ascending=False, kind="stable")
        if len(same) > 1:
            for rank, index in enumerate(same.index):
                result[index] = f"{name} ({chr(ord('A') + rank) if rank < 26 else rank + 1})"
    return result


def keep_previous_names(table: pd.DataFrame, previous_names: dict[int, str]) -> pd.DataFrame:
    """Segments whose id carried over from the last run keep that run's name.

    A new segment whose fresh name collides with a kept one gets a suffix.
    """
    table = table.copy()
    kept = {segment_id: previous_names[segment_id] for segment_id in table["segment_id"] if segment_id in previous_names}
    names = [kept.get(segment_id, name) for segment_id, name in zip(table["segment_id"], table["segment_name"])]
    taken = set(kept.values())
    for position, (segment_id, name) in enumerate(zip(table["segment_id"], names)):
        if segment_id not in kept and name in taken:
            names[position] = f"{name} (new {segment_id})"
        taken.add(names[position])
    table["segment_name"] = names
    return table


def _float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
