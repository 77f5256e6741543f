"""Fit K-Means, assign every customer, and keep segment ids stable between runs.

Segment ids are independent of K-Means' internal label numbering: on a first run they are
numbered by size (1 = largest); on later runs each new centroid is matched to the last
published run's centroids (Hungarian matching, distances in original units divided by each
feature's spread) and keeps the matched segment's id; an unmatched centroid gets a new id.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

ASSIGN_CHUNK_ROWS = 200_000  # bounds the (rows x k x features) distance block to ~64 MB


#: Tukey's far-out fence: a customer is an outlier beyond Q3 + 3 x IQR of its segment's distances.
OUTLIER_IQR_FACTOR = 3.0


@dataclasses.dataclass
class Assignment:
    """Per customer (same order as the input rows), distances in scaled units.

    segment_ids: the nearest centroid's published id; distances: to it; second_ids: the
    second-nearest centroid's id (None with one segment); margins: second distance minus
    first (small means borderline); is_outlier: beyond its cluster's fence (see `outlier_fences`).
    """

    segment_ids: np.ndarray
    distances: np.ndarray
    second_ids: np.ndarray
    margins: np.ndarray
    is_outlier: np.ndarray
    labels: np.ndarray  # K-Means' cluster label of each row


def fit_kmeans(
    scaled: np.ndarray, k: int, *, random_state: int, n_init: int, init: np.ndarray | None = None
) -> KMeans:
    """K-Means on the scaled feature matrix (float32 for large inputs to halve memory).

    With `init` (k x features, e.g. the centres found on a smaller sample) one run starts
    from those centres instead of `n_init` k-means++ starts.
    """
    values = scaled.astype(np.float32) if len(scaled) > 1_000_000 else scaled
    if init is not None:
        return KMeans(n_clusters=k, init=init.astype(values.dtype), n_init=1, random_state=random_state).fit(values)
    return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(values)


def assign(model: KMeans, scaled: np.ndarray, segment_ids: np.ndarray, fences: np.ndarray | None = None) -> Assignment:
    """Nearest centroid of each row (in chunks, bounded memory), mapped to segment ids.

    `segment_ids[label]` is the published id of K-Means cluster `label`. Distances are in
    scaled units (standard deviations with the default scaling); of equally near centroids the
    one with the lowest label wins, for the nearest and the second. `fences[label]` is the
    distance beyond which a member of cluster `label` is an outlier (see `outlier_fences`);
    without it the fences are computed from these rows.
    """
    centroids = model.cluster_centers_.astype(np.float64)
    n_rows, k = len(scaled), len(centroids)
    labels = np.empty(n_rows, dtype=np.int64)
    seconds = np.zeros(n_rows, dtype=np.int64)
    distances = np.empty(n_rows, dtype=np.float64)
    margins = np.full(n_rows, np.nan)
    for start in range(0, n_rows, ASSIGN_CHUNK_ROWS):
        chunk = scaled[start : start + ASSIGN_CHUNK_ROWS].astype(np.float64)
        all_distances = np.sqrt(((chunk[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2))
        stop = start + len(chunk)
        rows = np.arange(len(chunk))
        nearest = all_distances.argmin(axis=1)  # ties: the lowest label, as in `assignment`'s SQL
        labels[start:stop] = nearest
        distances[start:stop] = all_distances[rows, nearest]
        if k > 1:
            all_distances[rows, nearest] = np.inf
            second = all_distances.argmin(axis=1)
            seconds[start:stop] = second
            margins[start:stop] = all_distances[rows, second] - distances[start:stop]
    return Assignment(
        segment_ids=segment_ids[labels],
        distances=distances,
        second_ids=segment_ids[seconds] if k > 1 else np.full(n_rows, None),
        margins=margins,
        is_outlier=distances > (outlier_fences(labels, distances, k) if fences is None else fences)[labels],
        labels=labels,
    )


def outlier_fences(labels: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """Per cluster label: Q3 + 3 x IQR of its members' distances (infinite for a cluster with none).

    A customer beyond its segment's fence is an outlier: being far from its own (nearest)
    centre means being far from every centre. Computed on the fitting sample, the fences are
    exact when the sample holds every customer and estimates (quartiles of thousands of
    distances) otherwise.
    """
    fences = np.full(k, np.inf)
    for label in np.unique(labels):
        q1, q3 = np.percentile(distances[labels == label], [25, 75])
        fences[label] = q3 + OUTLIER_IQR_FACTOR * (q3 - q1)
    return fences


def stable_segment_ids(
    centroids: np.ndarray,
    sizes: np.ndarray,
    spread: np.ndarray,
    previous: dict[int, np.ndarray] | None,
    next_free_id: int = 1,
) -> np.ndarray:
    """Published id for each new cluster (row of `centroids`, original units).

    `spread` (one positive number per feature) makes the units comparable. `previous` maps
    the last published run's segment ids to their centroids in the same features, or is None.
    """
    k = len(centroids)
    by_size = sorted(range(k), key=lambda label: (-sizes[label], tuple(centroids[label])))
    ids = np.zeros(k, dtype=np.int64)
    if not previous:
        for rank, label in enumerate(by_size):
            ids[label] = rank + 1
        return ids
    old_ids = sorted(previous)
    old = np.array([previous[segment_id] for segment_id in old_ids])
    scale = np.where(spread > 0, spread, 1.0)
    cost = np.sqrt((((centroids[:, None, :] - old[None, :, :]) / scale) ** 2).sum(axis=2))
    rows, columns = linear_sum_assignment(cost)
    matched = dict(zip(rows.tolist(), columns.tolist()))
    fresh = max(next_free_id, max(old_ids) + 1)
    for label in by_size:
        if label in matched:
            ids[label] = old_ids[matched[label]]
        else:
            ids[label] = fresh
            fresh += 1
    return ids
