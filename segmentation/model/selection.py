"""Choosing the number of segments k, with reasons.

`evaluate_candidates` returns a tidy table (one row per k, one column per criterion), stored
as it is in `k_evaluations`:

- inertia, and `is_elbow` where Kneedle finds the elbow of the inertia curve;
- silhouette (higher is better; on a seeded sample of at most `silhouette_rows` rows; the
  pairwise distances of those rows are computed once, in blocks, for every candidate);
- Davies-Bouldin (lower is better) and Calinski-Harabasz (higher is better);
- the gap statistic and its standard error (Tibshirani, Walther and Hastie, 2001) against
  `gap_references` uniform reference sets drawn in the data's bounding box;
- bootstrap stability: mean adjusted Rand index between the fit on the data and refits on
  `stability_resamples` resamples (drawn with replacement), both labelling all rows.

`choose_k` applies the documented rule:

1. Five criteria each vote for one k: the best silhouette, the lowest Davies-Bouldin, the
   highest Calinski-Harabasz, the elbow, and the gap rule (the smallest k with
   gap(k) >= gap(k+1) - s(k+1)).
2. Only stable candidates can win: mean ARI >= `min_stability` (if none is, all can).
3. The candidate with the most votes wins; ties go to the higher silhouette, then the
   smaller k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sklearn
from joblib import Parallel, delayed
from kneed import KneeLocator
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
)
from threadpoolctl import threadpool_limits

MIN_STABILITY = 0.75
PARALLEL_FROM_ROWS = 2_000  # rows from which scoring the candidates k in parallel pays
SCORE_MEMORY_MB = 64  # working memory of each candidate's pairwise distances (scikit-learn's default: 1 GB)
#: K-Means starts on each uniform reference set of the gap statistic: uniform data has no
#: clusters, its local optima have inertias within ~0.1% of each other, so one start moves
#: log(inertia) far less than the gap's own standard error (and costs a third of three)
GAP_REFERENCE_INITS = 1
SILHOUETTE_BLOCK_ROWS = 1_000  # rows of the silhouette's distance block: 1,000 x 10,000 float64 = 80 MB


def seeded_sample(values: np.ndarray, size: int, random_state: int) -> np.ndarray:
    """At most `size` rows of `values`, drawn without replacement with a fixed seed."""
    if len(values) <= size:
        return values
    rows = np.random.default_rng(random_state).choice(len(values), size=size, replace=False)
    return values[np.sort(rows)]


def evaluate_candidates(
    scaled: np.ndarray,
    k_values: range,
    *,
    random_state: int,
    n_init: int,
    gap_references: int = 10,
    stability_resamples: int = 10,
    silhouette_rows: int = 10_000,
    n_jobs: int = 2,
    return_models: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[int, KMeans]]:
    """Fit K-Means for each k on `scaled` (rows x features) and score it on every criterion.

    Returns one row per k with columns k, inertia, silhouette, davies_bouldin,
    calinski_harabasz, gap, gap_sd, stability_ari, is_elbow, gap_choice and votes. With
    `return_models`, also the fitted K-Means of each k (k -> KMeans), so the chosen one need not
    be fitted again.
    """
    rng = np.random.default_rng(random_state)
    low, high = scaled.min(axis=0), scaled.max(axis=0)
    references = [rng.uniform(low, high, size=scaled.shape) for _ in range(gap_references)]
    resamples = [rng.integers(0, len(scaled), size=len(scaled)) for _ in range(stability_resamples)]
    silhouette_rows_index = np.sort(rng.choice(len(scaled), size=min(silhouette_rows, len(scaled)), replace=False))
    # Each k is scored on its own, so the candidates share the cores (threads: K-Means and the
    # scores run outside the GIL); each runs its BLAS/OpenMP single-threaded, because OpenMP
    # threads spinning against each other on a busy 2-core machine made a 1 s choice take 20 s.
    with threadpool_limits(1):
        # (a few hundred rows: the threads would only contend for the GIL)
        workers = 1 if len(scaled) < PARALLEL_FROM_ROWS else max(1, min(n_jobs, len(k_values)))
        scored = Parallel(n_jobs=workers, prefer="threads")(
            delayed(_score)(scaled, k, references, resamples, random_state, n_init) for k in k_values
        )
    rows = [row for row, _ in scored]
    models = {row["k"]: model for row, model in scored}
    with threadpool_limits(1):  # a second BLAS thread cost more CPU than it saved on 2 busy cores
        silhouettes = silhouette_scores(
            scaled[silhouette_rows_index], [model.labels_[silhouette_rows_index] for model in models.values()]
        )
    for row, value in zip(rows, silhouettes):
        row["silhouette"] = value if row["davies_bouldin"] is not None else None
    table = pd.DataFrame(rows)
    elbow = find_elbow(table["k"].tolist(), table["inertia"].tolist())
    table["is_elbow"] = table["k"] == elbow
    gap_k = gap_choice(table)
    table["gap_choice"] = table["k"] == gap_k
    table["votes"] = count_votes(table)
    return (table, models) if return_models else table


def _score(
    scaled: np.ndarray,
    k: int,
    references: list[np.ndarray],
    resamples: list[np.ndarray],
    random_state: int,
    n_init: int,
) -> tuple[dict, KMeans]:
    """One row of `evaluate_candidates` (all but the silhouette) and the fitted K-Means with k clusters."""
    # scikit-learn's configuration is per thread
    with sklearn.config_context(working_memory=SCORE_MEMORY_MB):
        model = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(scaled)
        labels = model.labels_
        distinct = len(np.unique(labels))
        row = {"k": k, "inertia": float(model.inertia_),
               "smallest_segment_share": float(np.bincount(labels, minlength=k).min() / len(labels))}
        if distinct > 1:
            row["davies_bouldin"] = float(davies_bouldin_score(scaled, labels))
            row["calinski_harabasz"] = float(calinski_harabasz_score(scaled, labels))
        else:
            row["davies_bouldin"] = row["calinski_harabasz"] = None
        if references:
            log_reference = np.log(
                [KMeans(n_clusters=k, n_init=GAP_REFERENCE_INITS, random_state=random_state).fit(ref).inertia_ for ref in references]
            )
            row["gap"] = float(log_reference.mean() - np.log(max(model.inertia_, 1e-12)))
            row["gap_sd"] = float(log_reference.std() * np.sqrt(1 + 1 / len(references)))
        else:
            row["gap"] = row["gap_sd"] = None
        if resamples:
            scores = [
                adjusted_rand_score(
                    labels,
                    KMeans(n_clusters=k, n_init=3, random_state=random_state).fit(scaled[rows_drawn]).predict(scaled),
                )
                for rows_drawn in resamples
            ]
            row["stability_ari"] = float(np.mean(scores))
        else:
            row["stability_ari"] = None
        return row, model


def silhouette_scores(points: np.ndarray, labelings: list[np.ndarray]) -> list[float | None]:
    """Mean silhouette coefficient of `points` under each labeling (None where it has one group).

    The same value as scikit-learn's `silhouette_score` (Euclidean; equal to 1e-7), but the
    pairwise distances are computed once for all labelings, one block of rows at a time, and
    every labeling's per-cluster distance sums come from one matrix product of the block with
    all their one-hot matrices side by side: nine candidates on 10,000 rows take about 0.5 s of
    CPU instead of 2-3 s each.
    """
    points = np.asarray(points, dtype=np.float64)
    n_rows = len(points)
    codes, offsets, counts = [], [0], []
    for labels in labelings:
        _, inverse = np.unique(labels, return_inverse=True)
        codes.append(inverse)
        counts.append(np.bincount(inverse).astype(np.float64))
        offsets.append(offsets[-1] + len(counts[-1]))
    one_hot = np.zeros((n_rows, offsets[-1]), dtype=np.float32)
    for code, offset in zip(codes, offsets):
        one_hot[np.arange(n_rows), offset + code] = 1.0
    squared_norms = (points**2).sum(axis=1)
    totals = [np.zeros(n_rows) for _ in labelings]
    block = np.empty((min(SILHOUETTE_BLOCK_ROWS, n_rows), n_rows))
    single = np.empty(block.shape, dtype=np.float32)
    for start in range(0, n_rows, SILHOUETTE_BLOCK_ROWS):
        stop = min(start + SILHOUETTE_BLOCK_ROWS, n_rows)
        rows = np.arange(stop - start)
        distances, distances32 = block[: stop - start], single[: stop - start]
        np.matmul(points[start:stop], points.T, out=distances)  # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b
        distances *= -2.0
        distances += squared_norms[start:stop, None]
        distances += squared_norms[None, :]
        np.maximum(distances, 0.0, out=distances)
        np.sqrt(distances, out=distances)
        distances[rows, rows + start] = 0.0
        np.copyto(distances32, distances)  # float32 halves the product; sums keep 6 digits
        sums = (distances32 @ one_hot).astype(np.float64)  # rows x all clusters of all labelings
        for code, offset, count, total in zip(codes, offsets, counts, totals):
            per_cluster = sums[:, offset : offset + len(count)]
            own = code[start:stop]
            own_count = count[own] - 1
            within = np.divide(per_cluster[rows, own], own_count, out=np.zeros(len(rows)), where=own_count > 0)
            means = per_cluster / count
            means[rows, own] = np.inf
            nearest_other = means.min(axis=1)
            width = np.maximum(within, nearest_other)
            with np.errstate(invalid="ignore"):  # one cluster: every "other" mean is infinite
                coefficient = np.divide(nearest_other - within, width, out=np.zeros(len(rows)), where=width > 0)
            total[start:stop] = np.where(own_count > 0, coefficient, 0.0)  # a lone member scores 0
    return [None if len(count) < 2 else float(total.mean()) for count, total in zip(counts, totals)]


def find_elbow(k_values: list[int], inertia: list[float]) -> int | None:
    """The k at the knee of the decreasing, convex inertia curve (Kneedle), or None."""
    if len(k_values) < 3:
        return None
    knee = KneeLocator(k_values, inertia, curve="convex", direction="decreasing").knee
    return None if knee is None else int(knee)


def gap_choice(table: pd.DataFrame) -> int | None:
    """Tibshirani's rule: the smallest k with gap(k) >= gap(k+1) - s(k+1), else the largest gap."""
    scored = table.dropna(subset=["gap"]).sort_values("k").reset_index(drop=True)
    if scored.empty:
        return None
    for index in range(len(scored) - 1):
        if scored.loc[index, "gap"] >= scored.loc[index + 1, "gap"] - scored.loc[index + 1, "gap_sd"]:
            return int(scored.loc[index, "k"])
    return int(scored.loc[scored["gap"].idxmax(), "k"])


def _best(table: pd.DataFrame, column: str, lowest: bool = False) -> int | None:
    scored = table.dropna(subset=[column])
    if scored.empty:
        return None
    return int(scored.sort_values([column, "k"], ascending=[lowest, True])["k"].iloc[0])


def criterion_choices(table: pd.DataFrame) -> dict[str, int | None]:
    """The k each criterion votes for."""
    elbow = table.loc[table["is_elbow"], "k"]
    gap = table.loc[table["gap_choice"], "k"] if "gap_choice" in table else pd.Series(dtype=int)
    return {
        "silhouette": _best(table, "silhouette"),
        "davies_bouldin": _best(table, "davies_bouldin", lowest=True),
        "calinski_harabasz": _best(table, "calinski_harabasz"),
        "elbow": int(elbow.iloc[0]) if len(elbow) else None,
        "gap": int(gap.iloc[0]) if len(gap) else None,
    }


def count_votes(table: pd.DataFrame) -> list[int]:
    choices = criterion_choices(table)
    return [sum(1 for choice in choices.values() if choice == k) for k in table["k"]]


def choose_k(table: pd.DataFrame, min_stability: float = MIN_STABILITY, min_segment_share: float = 0.0) -> tuple[int, str]:
    """Apply the module's rule to an `evaluate_candidates` table; return (k, rationale).

    A candidate whose smallest segment holds less than `min_segment_share` of the customers
    cannot be chosen, unless no candidate qualifies (the rationale says so either way).
    """
    choices = criterion_choices(table)
    scored = table.assign(votes=count_votes(table)).dropna(subset=["silhouette"])
    if scored.empty:
        raise ValueError("no candidate k produced more than one segment")
    size_note = ""
    if min_segment_share > 0 and "smallest_segment_share" in scored:
        large_enough = scored[scored["smallest_segment_share"] >= min_segment_share]
        excluded = sorted(int(k) for k in scored.loc[scored["smallest_segment_share"] < min_segment_share, "k"])
        if large_enough.empty:
            size_note = (
                f" Every candidate has a segment smaller than {min_segment_share:.1%} of customers"
                " (min_segment_share); all were considered."
            )
        else:
            scored = large_enough
            if excluded:
                size_note = (
                    f" Not eligible (a segment under {min_segment_share:.1%} of customers, min_segment_share):"
                    f" k = {', '.join(map(str, excluded))}."
                )
    stable = scored
    stability_note = ""
    if scored["stability_ari"].notna().any():
        stable = scored[scored["stability_ari"] >= min_stability]
        if stable.empty:
            stable = scored
            stability_note = f" No candidate reached the stability threshold (mean ARI {min_stability}); all were considered."
        else:
            unstable = scored[scored["stability_ari"] < min_stability].sort_values("k")
            if len(unstable):
                stability_note = (
                    f" Not eligible (not stable: mean ARI under {min_stability} over resamples): "
                    + ", ".join(f"k = {int(item.k)} ({item.stability_ari:.2f})" for item in unstable.itertuples())
                    + "."
                )
    ranked = stable.sort_values(["votes", "silhouette", "k"], ascending=[False, False, True])
    chosen = int(ranked["k"].iloc[0])
    tied = sorted(int(k) for k in ranked.loc[ranked["votes"] == ranked["votes"].iloc[0], "k"] if k != chosen)
    if tied:
        stability_note = (
            f" Tied on votes with k = {', '.join(map(str, tied))}: the higher silhouette decided." + stability_note
        )
    row = table.set_index("k").loc[chosen]
    agreeing = [name for name, k in choices.items() if k == chosen]
    other = [f"{_LABELS[name]} {k}" for name, k in choices.items() if k is not None and k != chosen]
    parts = [
        f"k = {chosen}: chosen by {len(agreeing)} of {len(choices)} criteria"
        + (f" ({', '.join(_LABELS[name] for name in agreeing)})" if agreeing else ""),
        f"silhouette {row['silhouette']:.3f}" + (" (best)" if choices["silhouette"] == chosen else ""),
        f"Davies-Bouldin {row['davies_bouldin']:.3f}" + (" (lowest)" if choices["davies_bouldin"] == chosen else ""),
    ]
    if choices["elbow"] is not None:
        parts.append(f"elbow of inertia at k = {choices['elbow']}")
    else:
        parts.append("no clear elbow of inertia")
    if pd.notna(row.get("stability_ari")):
        word = "stable" if row["stability_ari"] >= min_stability else "not stable"
        parts.append(f"{word} (mean ARI {row['stability_ari']:.2f} over resamples)")
    text = "; ".join(parts) + "."
    if other:
        text += " Other criteria preferred: " + ", ".join(other) + "."
    return chosen, text + stability_note + size_note


_LABELS = {
    "silhouette": "silhouette",
    "davies_bouldin": "Davies-Bouldin",
    "calinski_harabasz": "Calinski-Harabasz",
    "elbow": "elbow",
    "gap": "gap statistic",
}
