"""What changed since the last published run, and the health gate that can hold a run.

Pure functions: sizes and centroids in, figures and reasons out.
"""

from __future__ import annotations

import numpy as np

#: Share given to a segment absent from one of the runs, so the PSI stays finite.
EMPTY_SHARE = 1e-4


def population_stability_index(current: dict[int, int], previous: dict[int, int]) -> float:
    """PSI of segment sizes, by segment id: sum of (c - p) * ln(c / p) over shares.

    Rule of thumb: below 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 large shift.
    """
    current_total, previous_total = sum(current.values()), sum(previous.values())
    psi = 0.0
    for segment_id in set(current) | set(previous):
        c = max(current.get(segment_id, 0) / current_total, EMPTY_SHARE)
        p = max(previous.get(segment_id, 0) / previous_total, EMPTY_SHARE)
        psi += (c - p) * np.log(c / p)
    return float(psi)


def centroid_shifts(
    current: dict[int, np.ndarray], previous: dict[int, np.ndarray], spread: np.ndarray
) -> dict[int, float | None]:
    """Distance each segment's centre moved (original units divided by `spread`); None if new."""
    scale = np.where(spread > 0, spread, 1.0)
    return {
        segment_id: (float(np.linalg.norm((centre - previous[segment_id]) / scale)) if segment_id in previous else None)
        for segment_id, centre in current.items()
    }


def health_problems(
    silhouette: float | None,
    size_psi: float | None,
    *,
    min_silhouette: float,
    max_size_psi: float,
) -> list[str]:
    """Reasons to hold a run instead of publishing it (empty when it is healthy)."""
    problems = []
    if silhouette is not None and silhouette < min_silhouette:
        problems.append(f"silhouette {silhouette:.3f} is below min_silhouette {min_silhouette:g}")
    if size_psi is not None and size_psi > max_size_psi:
        problems.append(f"segment sizes drifted: PSI {size_psi:.3f} is above max_size_psi {max_size_psi:g}")
    return problems
