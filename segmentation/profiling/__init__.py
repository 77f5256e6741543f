"""Segment profiles for any declared data set, with names and recommendations.

Two grains:
- `features` (long): one row per segment x declared column (x category): mean in original
  units (share 0..1 for a category or a boolean), median, index against all customers
  (100 = average), z score (in standard deviations of all customers), strength and level;
- `profiles` (wide): one row per segment: size, share, name, recommendation, what sets it
  apart in words, and its centroid (encoded feature -> mean before scaling).

A level is judged on the figure published beside it, the arithmetic mean (or share), against
the same figure over all customers (`segmentation.profiling.levels`): "high" is always above
it, "low" always below. Names and recommendations follow from the levels of the clustering
features only, so they never speak of a feature the run did not use; the words of advice are
in `segmentation.profiling.advice`.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd

from segmentation.dataset import Column, Dataset, Rule
from segmentation.orders import names as rfm_names
from segmentation.profiling import levels
from segmentation.profiling.advice import CLOSE_TO_AVERAGE, distinguishing_features, recommendation
from segmentation.profiling.levels import AVERAGE, HIGH, LEVEL_THRESHOLD, LOW, VERY, feature_word, level
from segmentation.profiling.statistics import SegmentStatistics, medians

__all__ = [
    "AVERAGE", "CLOSE_TO_AVERAGE", "HIGH", "LEVEL_THRESHOLD", "LOW", "NamePart", "feature_statistics",
    "keep_previous_names", "level", "profile_segments", "profiles_from_statistics", "segment_name", "unique_names",
]

#: At most this many features make a segment's name.
NAME_FEATURES = 3


def _row(segment_id, category, mean, median, overall_mean, z_score, strength) -> dict:
    return {
        "segment_id": int(segment_id), "category": category, "mean": _float(mean), "median": _float(median),
        "index_value": None if pd.isna(mean) or not overall_mean or pd.isna(overall_mean) else float(100 * mean / overall_mean),
        "z_score": _float(z_score), "strength": _float(strength), "level": level(mean, overall_mean, strength),
        "overall_mean": _float(overall_mean),
    }


def _statistics(statistics: SegmentStatistics, medians: dict[str, pd.Series], column: Column) -> list[dict]:
    """Long rows for one declared column: per segment and (for categories) per category."""
    rows = []
    if column.is_numeric:
        sums = statistics.numeric[column.name].sort_index()
        known = sums["known"].sum()
        overall_mean = sums["total"].sum() / known if known else np.nan
        overall_sd = np.sqrt(max(statistics.raw_squares[column.name] / known - overall_mean**2, 0.0)) if known else np.nan
        segment_medians = medians.get(column.name, pd.Series(dtype=float))
        for segment_id, row in sums.iterrows():
            mean = row["total"] / row["known"] if row["known"] else np.nan
            z_score = (mean - overall_mean) / overall_sd if overall_sd and not pd.isna(overall_sd) else 0.0
            strength = levels.strength(mean, overall_mean, overall_sd, ratio=column.has_ratio)
            rows.append(_row(segment_id, None, mean, segment_medians.get(segment_id), overall_mean, z_score, strength))
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
            strength = levels.share_strength(share, overall, both_ways=column.type == "boolean")
            rows.append(_row(segment_id, category, share, None, overall, z_score, strength))
    return rows


def feature_statistics(
    statistics: SegmentStatistics, medians: dict[str, pd.Series], dataset: Dataset, features: list[str]
) -> pd.DataFrame:
    """The long table: segment_id, position, feature, category, label, unit, is_clustering_feature,
    mean, median, index_value, z_score, strength, level, overall_mean (one row per segment x column x category)."""
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


@dataclasses.dataclass(frozen=True)
class NamePart:
    """One clustering feature as a segment's name says it: its words, level and strength."""

    strength: float
    word: str
    feature: str
    level: str
    very_word: str  # the words when the name must say how strongly ("very high income")


def _name_part(column: Column, rows: pd.DataFrame) -> NamePart:
    """The feature's part of a name; for a category, the value most of the segment has if it
    has more of it than all customers, else the value it has most more of, else the one it most
    lacks: the name says what the segment is."""
    rows = rows[rows["level"].notna()]
    if rows.empty:
        return NamePart(0.0, feature_word(column, AVERAGE), column.name, AVERAGE, feature_word(column, AVERAGE))
    if column.type == "category":
        apart = rows[rows["level"] != AVERAGE]
        rising = apart[apart["level"] == HIGH]
        majority = rising[rising["mean"] > 0.5]
        pick = next(frame for frame in (majority, rising, apart, rows) if len(frame))
        pick = pick.sort_values("strength", ascending=False).iloc[0]
    else:
        pick = rows.iloc[0]
    strength = 0.0 if pd.isna(pick["strength"]) else float(pick["strength"])
    category = None if pd.isna(pick["category"]) else str(pick["category"])
    word = feature_word(column, pick["level"], pick["mean"], category)
    very = feature_word(column, pick["level"], pick["mean"], category, very=strength >= VERY)
    return NamePart(strength, word, column.name, pick["level"], very)


def _name_parts(dataset: Dataset, features: list[str], segment_rows: pd.DataFrame) -> list[NamePart]:
    """One part per clustering feature, in the order of `features`."""
    return [_name_part(dataset.column(name), segment_rows[segment_rows["feature"] == name]) for name in features]


def segment_name(parts: list[NamePart], extra: int = 0) -> str:
    """Up to three features (all when there are at most three, else the most distinct), capitalised.

    `extra` names that many more of the most distinct features (to tell two segments apart);
    NAME_FEATURES says how strongly instead ("very high income")."""
    if extra == NAME_FEATURES:  # last resort before a suffix
        parts = [dataclasses.replace(part, word=part.very_word) for part in parts]
        extra = 0
    if len(parts) <= NAME_FEATURES and extra == 0:
        chosen = parts
    else:
        apart = sorted((part for part in parts if part.level != AVERAGE), key=lambda part: -part.strength)
        apart = apart[: NAME_FEATURES + extra]
        if not apart:
            return "Close to average on every feature"
        chosen = [part for part in parts if part in apart]
    text = ", ".join(part.word for part in chosen)
    return text[:1].upper() + text[1:]


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
        kind = rfm_names.kind({part.feature: part.level for part in parts}) if rfm_names.applies(features) else None
        kinds.append(kind)
        rows.append({
            "segment_id": int(segment_id),
            "customer_count": int(counts[segment_id]),
            "customer_share": counts[segment_id] / total,
            "segment_name": segment_name(parts),
            "distinguishing_features": distinguishing_features(dataset, features, segment_rows, long),
            "recommendation": recommendation(
                rules, dataset, features, segment_rows, rfm_names.RECOMMENDATIONS.get(kind or "")
            ),
            "centroid": {name: float(value) for name, value in centroids.loc[segment_id].items()},
            "levels": {part.feature: part.level for part in parts},
        })
    table = pd.DataFrame(rows)
    table["segment_name"] = unique_names(table, parts_by_segment)
    if kinds and all(kinds):  # on recency, frequency and monetary value: the marketers' words
        named = rfm_names.unique_names(kinds, [_base(name) for name in table["segment_name"]])
        table["segment_name"] = _suffixed(named, list(table["customer_count"]))
    return table, long


def unique_names(table: pd.DataFrame, parts_by_segment: dict[int, list[NamePart]] | None = None) -> list[str]:
    """No two segments share a name: first name more features, then say how strongly, then add a
    suffix to each of them (A, B, ... by size)."""
    names = dict(zip(table["segment_id"], table["segment_name"]))
    if parts_by_segment:
        for extra in (1, 2, NAME_FEATURES):
            clashing = {name for name in names.values() if list(names.values()).count(name) > 1}
            for segment_id, name in names.items():
                if name in clashing and (extra == NAME_FEATURES or len(parts_by_segment[segment_id]) > NAME_FEATURES):
                    names[segment_id] = segment_name(parts_by_segment[segment_id], extra)
    return _suffixed([names[segment_id] for segment_id in table["segment_id"]], list(table["customer_count"]))


#: The suffix `unique_names` or `keep_previous_names` adds: " (A)", " (27)", " (new 7)".
_SUFFIX = re.compile(r" \((?:[A-Z]|\d+|new \d+)\)$")


def _base(name: str) -> str:
    return _SUFFIX.sub("", name)


def _suffixed(names: list[str], sizes: list[int]) -> list[str]:
    """`names` with each shared one suffixed A, B, ... by size (largest first), and a suffix
    that no longer tells two segments apart dropped: never an "(A)" without a "(B)"."""
    result = list(names)
    bases = [_base(name) for name in names]
    for base in set(bases):
        members = [position for position, other in enumerate(bases) if other == base]
        if len(members) == 1:
            result[members[0]] = base
        elif len({names[position] for position in members}) < len(members) or any(
                names[position] == base for position in members):
            by_size = sorted(members, key=lambda position: -sizes[position])
            for rank, position in enumerate(by_size):
                result[position] = f"{base} ({chr(ord('A') + rank) if rank < 26 else rank + 1})"
    return result


def keep_previous_names(table: pd.DataFrame, previous_names: dict[int, str]) -> pd.DataFrame:
    """Segments whose id carried over from the last run keep that run's name, suffix and all,
    as long as it is still true: its name without the suffix is the one the segment gets now.
    Otherwise the segment takes its new name; suffixes are then settled (see `_suffixed`)."""
    table = table.copy()
    names = []
    for segment_id, name in zip(table["segment_id"], table["segment_name"]):
        previous = previous_names.get(segment_id)
        names.append(previous if previous is not None and _base(previous) == _base(name) else name)
    table["segment_name"] = _suffixed(names, list(table["customer_count"]))
    return table


def _float(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value) else float(value)
