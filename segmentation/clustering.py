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

ASSIGN_CHUNK_ROWS = 1_000_000


@dataclasses.dataclass
class Assignment:
    """Per customer (same order as the input rows): segment id and distance to its centroid."""

    segment_ids: np.ndarray
    distances: np.ndarray


def fit_kmeans(scaled: np.ndarray, k: int, *, random_state: int, n_init: int) -> KMeans:
    """K-Means on the scaled feature matrix (float32 for large inputs to halve memory)."""
    values = scaled.astype(np.float32) if len(scaled) > 1_000_000 else scaled
    return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(values)


def assign(model: KMeans, scaled: np.ndarray, segment_ids: np.ndarray) -> Assignment:
    """Nearest centroid of each row (in chunks, bounded memory), mapped to segment ids.

    `segment_ids[label]` is the published id of K-Means cluster `label`. Distances are in
    scaled units (standard deviations with the default scaling).
    """
    centroids = model.cluster_centers_.astype(np.float64)
    labels = np.empty(len(scaled), dtype=np.int64)
    distances = np.empty(len(scaled), dtype=np.float64)
    for start in range(0, len(scaled), ASSIGN_CHUNK_ROWS):
        chunk = scaled[start : start + ASSIGN_CHUNK_ROWS].astype(np.float64)
        squared = ((chunk[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        nearest = squared.argmin(axis=1)
        labels[start : start + len(chunk)] = nearest
        distances[start : start + len(chunk)] = np.sqrt(squared[np.arange(len(chunk)), nearest])
    return Assignment(segment_ids=segment_ids[labels], distances=distances)


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
