"""Segment profiles in original units, with readable names and marketing recommendations.

Grain: one row per segment. A feature's level in a segment is its mean compared with the
mean over all customers, in standard deviations of all customers (z): below -0.5 is low,
above +0.5 is high, in between average. Names and recommendations follow from the levels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOW, AVERAGE, HIGH = "low", "average", "high"
LEVEL_THRESHOLD = 0.5

_LEVEL_WORDS = {
    "annual_income_k": {LOW: "low income", AVERAGE: "average income", HIGH: "high income"},
    "spending_score": {LOW: "low spending", AVERAGE: "average spending", HIGH: "high spending"},
    "age": {LOW: "younger", AVERAGE: "middle-aged", HIGH: "older"},
    "gender": {LOW: "mostly male", AVERAGE: "mixed gender", HIGH: "mostly female"},
}

_BY_INCOME_AND_SPENDING = {
    (HIGH, HIGH): "Premium offers: VIP and loyalty programme, new premium lines, early access; protect their loyalty.",
    (HIGH, AVERAGE): "Upsell: premium upgrades and bundles to lift spending towards their means.",
    (HIGH, LOW): "Win them over: personalised high-value offers and quality-led messaging to unlock untapped spending power.",
    (AVERAGE, HIGH): "Loyalty rewards and cross-selling of complementary products.",
    (AVERAGE, AVERAGE): "Standard campaigns: seasonal promotions and newsletters; test offers that move them up.",
    (AVERAGE, LOW): "Activation: targeted promotions and reminders to raise visit frequency.",
    (LOW, HIGH): "Value loyalty: reward points, bundles and flash sales on favourite items; avoid pushing credit.",
    (LOW, AVERAGE): "Value campaigns: everyday low prices, bundles and budget lines.",
    (LOW, LOW): "Budget/value campaigns: discounts, coupons and value packs at low contact cost.",
}
_BY_SPENDING = {
    HIGH: "Loyalty and retention: rewards, exclusive offers and early access.",
    AVERAGE: "Standard campaigns: seasonal promotions; test offers that raise spending.",
    LOW: "Activation: discounts and reminders to bring them back.",
}
_BY_INCOME = {
    HIGH: "Premium offers: higher-end lines and personal service.",
    AVERAGE: "Mid-range offers and seasonal promotions.",
    LOW: "Budget/value campaigns: discounts and value packs.",
}
_BY_AGE = {
    LOW: " Reach them through social media and mobile channels.",
    AVERAGE: "",
    HIGH: " Reach them through email, catalogue and in-store events.",
}


def level(z_score: float) -> str:
    """low / average / high for a segment mean `z_score` standard deviations from the overall mean."""
    if z_score < -LEVEL_THRESHOLD:
        return LOW
    if z_score > LEVEL_THRESHOLD:
        return HIGH
    return AVERAGE


def segment_name(levels: dict[str, str]) -> str:
    """E.g. {"annual_income_k": "high", "spending_score": "high"} -> "High income, high spending"."""
    order = ["annual_income_k", "spending_score", "age", "gender"]
    words = [_LEVEL_WORDS[feature][levels[feature]] for feature in order if feature in levels]
    text = ", ".join(words)
    return text[:1].upper() + text[1:]


def recommendation(levels: dict[str, str]) -> str:
    """A marketing action that follows from the segment's levels, for any feature set."""
    income, spending = levels.get("annual_income_k"), levels.get("spending_score")
    if income and spending:
        text = _BY_INCOME_AND_SPENDING[(income, spending)]
    elif spending:
        text = _BY_SPENDING[spending]
    elif income:
        text = _BY_INCOME[income]
    else:
        text = "Tailor products and messages to this group."
    if "age" in levels:
        text += _BY_AGE[levels["age"]]
    if levels.get("gender") in (LOW, HIGH):
        text += " Choose products and creative for a " + ("mostly female" if levels["gender"] == HIGH else "mostly male") + " audience."
    return text


def profile_segments(customers: pd.DataFrame, features: pd.DataFrame, segment_ids: np.ndarray) -> pd.DataFrame:
    """One row per segment id (ascending), all in original units.

    `customers` has age, annual_income_k, spending_score and gender per customer (original
    units, NaN where unknown); `features` holds the imputed clustering features. Returns
    customer_count, customer_share, avg_/median_ of age, income and spending, female_share,
    the index of age, income, spending and female share against the overall mean
    (100 = average), one `z_<feature>` and `level_<feature>` per clustering feature,
    distinguishing_features (words), segment_name, recommendation and centroid
    (feature -> mean in original units).
    """
    frame = customers[["age", "annual_income_k", "spending_score"]].astype(float).copy()
    known_gender = customers["gender"].notna()
    frame["is_female"] = np.where(known_gender, (customers["gender"] == "Female").astype(float), np.nan)
    frame["segment_id"] = segment_ids
    overall_attribute_mean = frame[["age", "annual_income_k", "spending_score", "is_female"]].mean()
    overall_mean = features.mean()
    overall_std = features.std(ddof=0).replace(0, 1.0)
    feature_means = features.assign(segment_id=segment_ids).groupby("segment_id").mean()
    grouped = frame.groupby("segment_id")
    total = len(frame)
    rows = []
    for segment_id, members in grouped:
        row = {
            "segment_id": int(segment_id),
            "customer_count": int(len(members)),
            "customer_share": len(members) / total,
            "female_share": _mean_or_none(members["is_female"]),
        }
        for column in ("age", "annual_income_k", "spending_score"):
            row[f"avg_{column}"] = _mean_or_none(members[column])
            row[f"median_{column}"] = _median_or_none(members[column])
        for column, index_name in _INDEXES.items():
            value, overall = members[column].mean(), overall_attribute_mean[column]
            row[index_name] = None if pd.isna(value) or not overall else float(100 * value / overall)
        levels = {}
        centroid = {}
        for feature in features.columns:
            mean = float(feature_means.loc[segment_id, feature])
            z_score = (mean - overall_mean[feature]) / overall_std[feature]
            row[f"z_{feature}"] = float(z_score)
            levels[feature] = level(z_score)
            row[f"level_{feature}"] = levels[feature]
            centroid[feature] = mean
        row["distinguishing_features"] = distinguishing_features(
            {feature: row[f"z_{feature}"] for feature in features.columns},
            {feature: (centroid[feature], float(overall_mean[feature])) for feature in features.columns},
        )
        row["segment_name"] = segment_name(levels)
        row["recommendation"] = recommendation(levels)
        row["centroid"] = centroid
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("segment_id").reset_index(drop=True)
    table["segment_name"] = _unique_names(table)
    return table


_INDEXES = {
    "age": "age_index",
    "annual_income_k": "annual_income_index",
    "spending_score": "spending_score_index",
    "is_female": "female_share_index",
}
_FEATURE_WORDS = {
    "annual_income_k": "annual income",
    "spending_score": "spending score",
    "age": "age",
    "gender": "female share",
}


def distinguishing_features(z_scores: dict[str, float], means: dict[str, tuple[float, float]]) -> str:
    """The features whose level is not average, strongest first, in words.

    `z_scores` maps feature -> segment mean in overall standard deviations; `means` maps
    feature -> (segment mean, overall mean) in original units.
    """
    apart = sorted(
        (feature for feature, z in z_scores.items() if abs(z) > LEVEL_THRESHOLD),
        key=lambda feature: -abs(z_scores[feature]),
    )
    if not apart:
        return "close to the average on every feature"
    parts = []
    for feature in apart:
        segment_mean, overall = means[feature]
        if feature == "gender":
            parts.append(f"{_FEATURE_WORDS[feature]} {segment_mean:.0%} against {overall:.0%} overall")
        elif overall:
            change = 100 * (segment_mean - overall) / abs(overall)
            direction = "above" if change >= 0 else "below"
            parts.append(f"{_FEATURE_WORDS[feature]} {abs(change):.0f}% {direction} average ({segment_mean:.1f} vs {overall:.1f})")
    return "; ".join(parts)


def keep_previous_names(table: pd.DataFrame, previous_names: dict[int, str]) -> pd.DataFrame:
    """Segments whose id carried over from the last run keep that run's name.

    A new segment whose fresh name collides with a kept one gets a suffix.
    """
    table = table.copy()
    kept = {segment_id: previous_names[segment_id] for segment_id in table["segment_id"] if segment_id in previous_names}
    names = []
    for segment_id, name in zip(table["segment_id"], table["segment_name"]):
        names.append(kept.get(segment_id, name))
    taken = set(kept.values())
    for position, (segment_id, name) in enumerate(zip(table["segment_id"], names)):
        if segment_id not in kept and name in taken:
            names[position] = f"{name} (new {segment_id})"
        taken.add(names[position])
    table["segment_name"] = names
    return table


def _unique_names(table: pd.DataFrame) -> list[str]:
    """Segments with the same levels get a distinguishing suffix (A, B, ... by size)."""
    names = table["segment_name"].tolist()
    result = list(names)
    for name in set(names):
        same = table[table["segment_name"] == name].sort_values("customer_count", ascending=False)
        if len(same) > 1:
            for rank, index in enumerate(same.index):
                result[index] = f"{name} ({chr(ord('A') + rank) if rank < 26 else rank + 1})"
    return result


def _mean_or_none(values: pd.Series) -> float | None:
    value = values.mean()
    return None if pd.isna(value) else float(value)


def _median_or_none(values: pd.Series) -> float | None:
    value = values.median()
    return None if pd.isna(value) else float(value)
