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
    reference_silhouette: float | None = None,
    reference_silhouette_max: float | None = None,
    min_silhouette_gain: float = 0.0,
) -> list[str]:
    """Reasons to hold a run instead of publishing it (empty when it is healthy), in plain words.

    Structure is judged against the data's own reference (see `selection.reference_sets`):
    the silhouette must beat the mean reference silhouette of the same k by
    `min_silhouette_gain`, and beat every reference set's (on small data sets the reference
    itself varies). `min_silhouette` is an absolute floor besides."""
    problems = []
    if silhouette is not None and reference_silhouette is not None:
        gain = silhouette - reference_silhouette
        shuffled = (f"(silhouette {silhouette:.3f} against {reference_silhouette:.3f} on average on the same data"
                    " with each feature shuffled on its own")
        if gain < min_silhouette_gain:
            problems.append(
                f"no clear structure: the segments hold together hardly better than those K-Means finds in"
                f" structureless data {shuffled}: a gain of {gain:.3f}, below min_silhouette_gain {min_silhouette_gain:g})"
            )
        elif reference_silhouette_max is not None and silhouette <= reference_silhouette_max:
            problems.append(
                f"no clear structure: one of the structureless copies of the data {shuffled}) gave segments"
                f" that hold together as well ({reference_silhouette_max:.3f})"
            )
    if silhouette is not None and silhouette < min_silhouette:
        problems.append(f"silhouette {silhouette:.3f} is below min_silhouette {min_silhouette:g}")
    if size_psi is not None and size_psi > max_size_psi:
        problems.append(f"segment sizes drifted: PSI {size_psi:.3f} is above max_size_psi {max_size_psi:g}")
    return problems


PREVIEW = "preview (--preview): nothing published"


def decide(problems: list[str], force_publish: bool, preview: bool) -> tuple[str, str | None, str | None]:
    """(status, error, forced reason) of a run with these health `problems`: a preview is held
    whatever its health; problems hold a run unless forced, and what was forced is kept."""
    if preview:
        return "held", "; ".join([PREVIEW, *problems]), None
    if problems and force_publish:
        return "published", None, "; ".join(problems)
    if problems:
        return "held", "; ".join(problems), None
    return "published", None, None


def how_to_explore(result) -> str:
    """What to do after a held run: keep the previous one, preview another k, or force it (recorded)."""
    evaluations = result.evaluations
    others = evaluations[(evaluations["k"] != result.k) & evaluations["silhouette"].notna()]
    if "silhouette_gain" in others and others["silhouette_gain"].notna().any():
        others = others.sort_values("silhouette_gain", ascending=False)
    suggestion = f" --k {int(others['k'].iloc[0])}" if len(others) else " --k N"
    return (
        "The previous run stays current. To look at another number of segments without publishing anything, run"
        f" `segment run{suggestion} --preview` and read its report; `--force-publish` publishes this run anyway"
        " (recorded in run_history and the report)"
    )
