"""Choosing the number of segments k, with reasons.

`evaluate_candidates` returns a tidy table (one row per k, one column per criterion), stored
as it is in `k_evaluations`:

- inertia, and `is_elbow` where Kneedle finds the elbow of the inertia curve;
- silhouette (higher is better; on a seeded sample of at most `silhouette_rows` rows; the
  pairwise distances of those rows are computed once, in blocks, for every candidate);
- the reference silhouette: the mean (and the largest) of the silhouettes of the same
  k on `gap_references` structureless data sets of the same shape: the data with each
  feature shuffled on its own (every column keeps its values, its skew, its zeros and its
  category shares; only the customers' profiles, the relations between columns, are gone;
  a one-feature run has none to shuffle, so its reference is uniform over the feature's
  range). K-Means finds segments in any data; the silhouette gain, silhouette minus
  reference, is what this data has beyond them;
- Davies-Bouldin (lower is better) and Calinski-Harabasz (higher is better);
- the gap statistic and its standard error (Tibshirani, Walther and Hastie, 2001) against
  the same reference sets;
- bootstrap stability: mean adjusted Rand index between the fit on the data and refits on
  `stability_resamples` resamples (drawn with replacement), both labelling all rows.

`choose_k` applies the documented rule:

1. Only stable candidates can win (mean ARI >= `min_stability`, if any is), and only those
   whose smallest segment holds `min_segment_share` of the customers (if any does). Whether
   the chosen k has structure enough to publish is the health gate's question, not this
   rule's: choosing among the k the gate would pass made the choice flip with 1% of the rows
   on data near the gate's threshold (German credit: 2 or 3; HealthInsurance: 4 or 5).
2. The best is the largest silhouette gain. The chosen k is the smallest whose gain is within
   a tenth of the best (TOLERANCE, at least 0.02): no more segments than the structure needs,
   and a choice that a few rows more or less do not flip between near-equal candidates.
3. k = 2 is the coarsest split, and K-Means finds one in any data: it is chosen only when
   its gain beats that of every larger k by more than the tolerance (two groups stand out).
4. A nightly run does not flip between near-equal candidates: when the previous published
   run's k is within the tolerance of the best, it stays (on our own five-group sample, one
   night's k = 4 at a gain of 0.192 against 0.202 at k = 5 held the night for drifted sizes).
5. `search` goes on past k_max while the best gain sits at the upper edge (up to
   `k_ceiling`), and the rationale says when the chosen k is at an edge of what was tried.

The other criteria each vote for one k (the best silhouette, the lowest Davies-Bouldin, the
highest Calinski-Harabasz, the elbow, and the gap rule: the smallest k with
gap(k) >= gap(k+1) - s(k+1)); the rationale names those that disagree.
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
#: K-Means starts on each reference set. The reference's silhouette is compared with that of
#: the data's best of n_init starts; with one start a reference fit sometimes stops in a worse
#: split (on two equal splits of a mixed data set, say), which made structureless data look
#: structured at k = 2 (gains up to 0.08 on pure noise); with three they stay within +-0.012
GAP_REFERENCE_INITS = 3
SILHOUETTE_BLOCK_ROWS = 1_000  # rows of the silhouette's distance block: 1,000 x 10,000 float64 = 80 MB
#: Rows of each reference set whose silhouette is measured: ten sets of 2,000 rows estimate the
#: reference's mean silhouette to about 0.005, at a twenty-fifth of the cost of 10,000 rows each
REFERENCE_SILHOUETTE_ROWS = 2_000
#: The chosen k is the smallest whose silhouette gain is within this share of the best gain
TOLERANCE = 0.1
#: ... and never less than this: one k's gain moved by up to 0.02 when 1% of the rows were
#: added or removed (AER HealthInsurance, 8,802 customers: 0.045 to 0.077 at k = 4)
MIN_TOLERANCE = 0.02
#: Candidates added at a time when the best gain sits at the upper edge of those tried
EXTEND_STEP = 3


def reference_sets(scaled: np.ndarray, blocks: list[list[int]] | None, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` structureless data sets of the shape of `scaled` (rows x encoded columns).

    `blocks` lists the encoded columns of each feature (a category's indicators together);
    each block's rows are shuffled on their own, so every feature keeps its values and only
    the relations between features are lost. With a single block (or column) nothing can be
    shuffled against anything: the reference is then uniform over the bounding box (the gap
    statistic's original reference)."""
    blocks = blocks if blocks is not None else [[column] for column in range(scaled.shape[1])]
    if len(blocks) < 2:
        low, high = scaled.min(axis=0), scaled.max(axis=0)
        return [rng.uniform(low, high, size=scaled.shape) for _ in range(count)]
    sets = []
    for _ in range(count):
        shuffled = np.empty_like(scaled)
        for block in blocks:
            shuffled[:, block] = scaled[rng.permutation(len(scaled))][:, block]
        sets.append(shuffled)
    return sets


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
    blocks: list[list[int]] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[int, KMeans]]:
    """Fit K-Means for each k on `scaled` (rows x features) and score it on every criterion.

    Returns one row per k with columns k, inertia, silhouette, reference_silhouette (mean),
    reference_silhouette_max, silhouette_gain, davies_bouldin, calinski_harabasz, gap, gap_sd,
    stability_ari, is_elbow, gap_choice and votes. `blocks`: the encoded columns of each
    feature (see `reference_sets`; default: each column on its own). With `return_models`,
    also the fitted K-Means of each k (k -> KMeans), so the chosen one need not be fitted again.
    """
    rng = np.random.default_rng(random_state)
    references = reference_sets(scaled, blocks, gap_references, rng)
    resamples = [rng.integers(0, len(scaled), size=len(scaled)) for _ in range(stability_resamples)]
    silhouette_rows_index = np.sort(rng.choice(len(scaled), size=min(silhouette_rows, len(scaled)), replace=False))
    reference_rows = np.sort(rng.choice(len(scaled), size=min(REFERENCE_SILHOUETTE_ROWS, len(scaled)), replace=False))
    # Each k is scored on its own, so the candidates share the cores (threads: K-Means and the
    # scores run outside the GIL); each runs its BLAS/OpenMP single-threaded, because OpenMP
    # threads spinning against each other on a busy 2-core machine made a 1 s choice take 20 s.
    with threadpool_limits(1):
        # (a few hundred rows: the threads would only contend for the GIL)
        workers = 1 if len(scaled) < PARALLEL_FROM_ROWS else max(1, min(n_jobs, len(k_values)))
        scored = Parallel(n_jobs=workers, prefer="threads")(
            delayed(_score)(scaled, k, references, resamples, random_state, n_init) for k in k_values
        )
    rows = [row for row, _, _ in scored]
    models = {row["k"]: model for row, model, _ in scored}
    with threadpool_limits(1):  # a second BLAS thread cost more CPU than it saved on 2 busy cores
        silhouettes = silhouette_scores(
            scaled[silhouette_rows_index], [model.labels_[silhouette_rows_index] for model in models.values()]
        )
        # per reference set, every k's silhouette from one pass over its distances
        on_references = np.array([
            silhouette_scores(reference[reference_rows], [labels[position][reference_rows] for _, _, labels in scored])
            for position, reference in enumerate(references)
        ], dtype=float).reshape(len(references), len(rows))
    for column, (row, value) in enumerate(zip(rows, silhouettes)):
        row["silhouette"] = value if row["davies_bouldin"] is not None else None
        known = on_references[:, column][~np.isnan(on_references[:, column])] if len(references) else []
        row["reference_silhouette"] = float(np.mean(known)) if len(known) else None
        row["reference_silhouette_max"] = float(np.max(known)) if len(known) else None
        row["silhouette_gain"] = (
            row["silhouette"] - row["reference_silhouette"]
            if row["silhouette"] is not None and row["reference_silhouette"] is not None else None
        )
    return (finish_table(rows), models) if return_models else finish_table(rows)


def finish_table(rows: list[dict]) -> pd.DataFrame:
    """The candidates' rows as a table, with the criteria that compare candidates: the elbow,
    the gap rule's choice and each k's votes."""
    table = pd.DataFrame(rows).sort_values("k").reset_index(drop=True)
    elbow = find_elbow(table["k"].tolist(), table["inertia"].tolist())
    table["is_elbow"] = table["k"] == elbow
    gap_k = gap_choice(table)
    table["gap_choice"] = table["k"] == gap_k
    table["votes"] = count_votes(table)
    return table


def _score(
    scaled: np.ndarray,
    k: int,
    references: list[np.ndarray],
    resamples: list[np.ndarray],
    random_state: int,
    n_init: int,
) -> tuple[dict, KMeans, list[np.ndarray]]:
    """One row of `evaluate_candidates` (all but the silhouettes), the fitted K-Means with k
    clusters and its labels of each reference set."""
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
        reference_fits = [
            KMeans(n_clusters=k, n_init=GAP_REFERENCE_INITS, random_state=random_state).fit(ref) for ref in references
        ]
        if references:
            log_reference = np.log([max(fit.inertia_, 1e-12) for fit in reference_fits])
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
        return row, model, [fit.labels_ for fit in reference_fits]


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


def eligible(table: pd.DataFrame, min_stability: float = MIN_STABILITY, min_segment_share: float = 0.0) -> tuple[pd.DataFrame, str]:
    """The candidates that may be chosen (stable, segments large enough: see the module
    docstring), and a sentence on those left out."""
    scored = table.dropna(subset=["silhouette"])
    if scored.empty:
        raise ValueError("no candidate k produced more than one segment")
    notes = ""
    if min_segment_share > 0 and "smallest_segment_share" in scored:
        large_enough = scored[scored["smallest_segment_share"] >= min_segment_share]
        excluded = sorted(int(k) for k in scored.loc[scored["smallest_segment_share"] < min_segment_share, "k"])
        if large_enough.empty:
            notes += (f" Every candidate has a segment smaller than {min_segment_share:.1%} of customers"
                      " (min_segment_share); all were considered.")
        else:
            scored = large_enough
            if excluded:
                notes += (f" Not eligible (a segment under {min_segment_share:.1%} of customers, min_segment_share):"
                          f" k = {', '.join(map(str, excluded))}.")
    if scored["stability_ari"].notna().any():
        stable = scored[scored["stability_ari"] >= min_stability]
        if stable.empty:
            notes += f" No candidate reached the stability threshold (mean ARI {min_stability}); all were considered."
        else:
            unstable = scored[scored["stability_ari"] < min_stability].sort_values("k")
            if len(unstable):
                notes += (f" Not eligible (not stable: mean ARI under {min_stability} over resamples): "
                          + ", ".join(f"k = {int(item.k)} ({item.stability_ari:.2f})" for item in unstable.itertuples())
                          + ".")
            scored = stable
    return scored, notes


def _gain(table: pd.DataFrame) -> pd.Series:
    """Each candidate's silhouette gain over the reference; the silhouette itself without references."""
    if "silhouette_gain" in table and table["silhouette_gain"].notna().any():
        return table["silhouette_gain"].astype(float)
    return table["silhouette"].astype(float)


def best_k(table: pd.DataFrame, min_stability: float = MIN_STABILITY, min_segment_share: float = 0.0) -> int:
    """The eligible candidate with the largest silhouette gain (ties: the smaller k)."""
    scored, _ = eligible(table, min_stability, min_segment_share)
    return int(scored.assign(gain=_gain(scored)).sort_values(["gain", "k"], ascending=[False, True])["k"].iloc[0])


def choose_k(
    table: pd.DataFrame, min_stability: float = MIN_STABILITY, min_segment_share: float = 0.0, *,
    k_max: int | None = None, k_ceiling: int | None = None, previous_k: int | None = None,
) -> tuple[int, str]:
    """Apply the module's rule to an `evaluate_candidates` table; return (k, rationale).

    `previous_k`: the k of the segmentation's previous published run, kept while it is within
    the tolerance of the best.

    `k_max` is the range the settings asked for; candidates above it are there because `search`
    went on past it (up to `k_ceiling`), which the rationale then says.
    """
    choices = criterion_choices(table)
    scored, notes = eligible(table, min_stability, min_segment_share)
    gains = _gain(scored)
    measure = "silhouette gain" if "silhouette_gain" in scored and scored["silhouette_gain"].notna().any() else "silhouette"
    by_k = dict(zip(scored["k"].astype(int), gains))
    best = max(by_k, key=lambda k: (by_k[k], -k))
    tolerance = max(TOLERANCE * abs(by_k[best]), MIN_TOLERANCE)
    larger = {k: gain for k, gain in by_k.items() if k > 2}
    two_stands_out = 2 in by_k and (not larger or by_k[2] > max(larger.values()) + tolerance)
    pool = by_k if two_stands_out or not larger else larger
    top = max(pool, key=lambda k: (pool[k], -k))
    chosen = min(k for k, gain in pool.items() if gain >= pool[top] - tolerance)
    row = table.set_index("k").loc[chosen]
    why = _why(chosen, top, by_k, row, tolerance, two_stands_out, measure)
    if previous_k is not None and previous_k != chosen and previous_k in pool and pool[previous_k] >= pool[top] - tolerance:
        fewest = chosen
        chosen, row = previous_k, table.set_index("k").loc[previous_k]
        if previous_k == top:
            why = (f"the largest {measure} ({pool[top]:.3f}), as in the previous published run; k = {fewest}"
                   f" ({pool[fewest]:.3f}) is within {tolerance:.3f} of it, but a near tie does not change the segments")
        else:
            why = (f"as in the previous published run: its {measure} {pool[previous_k]:.3f} is within {tolerance:.3f} of"
                   f" the largest ({pool[top]:.3f} at k = {top}), and a near tie does not change the segments")
    parts = [f"k = {chosen}: " + why]
    agreeing = [name for name, k in choices.items() if k == chosen]
    parts.append(f"silhouette {row['silhouette']:.3f}" + (" (best)" if choices["silhouette"] == chosen else "")
                 + (f" against {row['reference_silhouette']:.3f} on the shuffled reference"
                    if pd.notna(row.get("reference_silhouette")) else ""))
    parts.append(f"Davies-Bouldin {row['davies_bouldin']:.3f}" + (" (lowest)" if choices["davies_bouldin"] == chosen else ""))
    parts.append(f"elbow of inertia at k = {choices['elbow']}" if choices["elbow"] is not None else "no clear elbow of inertia")
    if pd.notna(row.get("stability_ari")):
        word = "stable" if row["stability_ari"] >= min_stability else "not stable"
        parts.append(f"{word} (mean ARI {row['stability_ari']:.2f} over resamples)")
    text = "; ".join(parts) + "."
    if agreeing:
        text += f" Criteria that agree: {', '.join(_LABELS[name] for name in agreeing)}."
    other = [f"{_LABELS[name]} {k}" for name, k in choices.items() if k is not None and k != chosen]
    if other:
        text += " Other criteria preferred: " + ", ".join(other) + "."
    return chosen, text + _edges(chosen, best, table, k_max, k_ceiling) + notes


def _why(chosen, best, by_k, row, tolerance, two_stands_out, measure) -> str:
    """The rule's reason for `chosen`, in words."""
    gain = by_k[chosen]
    if chosen == 2 and two_stands_out:
        rivals = {k: value for k, value in by_k.items() if k > 2}
        if not rivals:
            return f"two groups ({measure} {gain:.3f}; no larger k was eligible)"
        return (f"two groups stand out: {measure} {gain:.3f}, more than {tolerance:.3f} above every larger k"
                f" (next best {max(rivals.values()):.3f} at k = {max(rivals, key=rivals.get)})")
    text = f"the largest {measure}" if chosen == best else (
        f"the fewest segments within {tolerance:.3f} of the largest {measure} ({by_k[best]:.3f} at k = {best})")
    text = f"{text} ({gain:.3f})" if chosen == best else f"{text}: {gain:.3f}"
    if 2 in by_k and chosen != 2 and by_k[2] >= by_k[chosen]:
        text += f"; k = 2 ({by_k[2]:.3f}) does not stand out by more than {tolerance:.3f}, so it is not taken for two groups"
    return text


def _edges(chosen: int, best: int, table: pd.DataFrame, k_max: int | None, k_ceiling: int | None) -> str:
    """What the rationale says when the best or chosen k sits at an edge of the candidates tried."""
    tried = table["k"].astype(int)
    low, high = int(tried.min()), int(tried.max())
    notes = ""
    if k_max is not None and high > k_max:
        notes += (f" The best k was at the upper edge of the range (k_max = {k_max}) and the gain still rose,"
                  f" so the search went on to k = {high}")
        notes += f" (the cap, k_ceiling = {k_ceiling})." if k_ceiling is not None and high >= k_ceiling else "."
    if best == high and best == chosen:
        notes += (f" k = {chosen} is the largest k tried: more segments might fit better still;"
                  " raise k_ceiling (or k_max) to look further.")
    elif chosen == low and low > 2:
        notes += f" k = {chosen} is the smallest k tried (k_min): fewer segments were not considered."
    return notes


def search(
    scaled: np.ndarray, k_min: int, k_max: int, k_ceiling: int, *, min_stability: float = MIN_STABILITY,
    min_segment_share: float = 0.0, previous_k: int | None = None, **options,
) -> tuple[pd.DataFrame, dict[int, KMeans], int, str]:
    """Evaluate k_min..k_max, and further (EXTEND_STEP at a time, up to `k_ceiling`) while the
    best silhouette gain sits at the largest k tried; then `choose_k`.

    `options` go to `evaluate_candidates`. Returns (table, models by k, k, rationale)."""
    table, models = evaluate_candidates(scaled, range(k_min, k_max + 1), return_models=True, **options)
    top = k_max
    while top < min(k_ceiling, len(scaled) - 1) and best_k(table, min_stability, min_segment_share) == top:
        more = range(top + 1, min(top + EXTEND_STEP, k_ceiling, len(scaled) - 1) + 1)
        extra, extra_models = evaluate_candidates(scaled, more, return_models=True, **options)
        table = finish_table(table.drop(columns=["is_elbow", "gap_choice", "votes"]).to_dict("records")
                             + extra.drop(columns=["is_elbow", "gap_choice", "votes"]).to_dict("records"))
        models.update(extra_models)
        top = more[-1]
    k, rationale = choose_k(table, min_stability, min_segment_share, k_max=k_max, k_ceiling=k_ceiling,
                            previous_k=previous_k)
    return table, models, k, rationale


_LABELS = {
    "silhouette": "best silhouette",
    "davies_bouldin": "Davies-Bouldin",
    "calinski_harabasz": "Calinski-Harabasz",
    "elbow": "elbow",
    "gap": "gap statistic",
}
