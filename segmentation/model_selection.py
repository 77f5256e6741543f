"""Choosing the number of segments k.

`evaluate_candidates` returns a tidy table (one row per k, one column per criterion) that is
stored as it is in `k_evaluations`; `choose_k` applies the documented rule:

1. Every candidate gets a silhouette (higher is better separated).
2. Candidates within `tolerance` of the best silhouette count as tied.
3. If the elbow of the inertia curve (Kneedle) is among the tied, it wins; otherwise the
   tied candidate with the highest silhouette wins (the smaller k on an exact tie).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from kneed import KneeLocator
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score


def seeded_sample(values: np.ndarray, size: int, random_state: int) -> np.ndarray:
    """At most `size` rows of `values`, drawn without replacement with a fixed seed."""
    if len(values) <= size:
        return values
    rows = np.random.default_rng(random_state).choice(len(values), size=size, replace=False)
    return values[np.sort(rows)]


def evaluate_candidates(
    scaled: np.ndarray, k_values: range, *, random_state: int, n_init: int
) -> pd.DataFrame:
    """Fit K-Means for each k on `scaled` (rows x features) and score it.

    Returns columns k, inertia, silhouette, davies_bouldin, calinski_harabasz, is_elbow.
    """
    rows = []
    for k in k_values:
        model = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(scaled)
        labels = model.labels_
        distinct = len(np.unique(labels))
        rows.append(
            {
                "k": k,
                "inertia": float(model.inertia_),
                "silhouette": float(silhouette_score(scaled, labels)) if distinct > 1 else None,
                "davies_bouldin": float(davies_bouldin_score(scaled, labels)) if distinct > 1 else None,
                "calinski_harabasz": float(calinski_harabasz_score(scaled, labels)) if distinct > 1 else None,
            }
        )
    table = pd.DataFrame(rows)
    elbow = find_elbow(table["k"].tolist(), table["inertia"].tolist())
    table["is_elbow"] = table["k"] == elbow
    return table


def find_elbow(k_values: list[int], inertia: list[float]) -> int | None:
    """The k at the knee of the decreasing, convex inertia curve (Kneedle), or None."""
    if len(k_values) < 3:
        return None
    knee = KneeLocator(k_values, inertia, curve="convex", direction="decreasing").knee
    return None if knee is None else int(knee)


def choose_k(table: pd.DataFrame, tolerance: float) -> tuple[int, str]:
    """Apply the module's rule to an `evaluate_candidates` table; return (k, rationale)."""
    scored = table.dropna(subset=["silhouette"])
    if scored.empty:
        raise ValueError("no candidate k produced more than one segment")
    best = scored["silhouette"].max()
    tied = scored[scored["silhouette"] >= best - tolerance]
    elbow_rows = table[table["is_elbow"]]
    elbow = int(elbow_rows["k"].iloc[0]) if not elbow_rows.empty else None
    if elbow is not None and elbow in set(tied["k"]):
        chosen = elbow
        reason = "the elbow of inertia is among the best silhouettes"
    else:
        chosen = int(tied.sort_values(["silhouette", "k"], ascending=[False, True])["k"].iloc[0])
        reason = "highest silhouette"
    row = table.set_index("k").loc[chosen]
    others = scored[scored["k"] != chosen]
    runner_up = others.sort_values("silhouette", ascending=False).head(1)
    parts = [f"k = {chosen}: {reason}; silhouette {row['silhouette']:.3f}"]
    if not runner_up.empty:
        parts.append(f"next best {runner_up['silhouette'].iloc[0]:.3f} at k = {int(runner_up['k'].iloc[0])}")
    parts.append(f"elbow of inertia at k = {elbow}" if elbow is not None else "no clear elbow of inertia")
    lowest_db = int(scored.sort_values("davies_bouldin")["k"].iloc[0])
    parts.append(f"Davies-Bouldin {row['davies_bouldin']:.3f} (lowest at k = {lowest_db})")
    return chosen, "; ".join(parts) + "."
