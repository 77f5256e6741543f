"""One colour per segment, the same in the report's plots and in the views' `segment_color`.

A segment's colour follows its id, and ids are kept from night to night (centroids are matched
to the last run's), so a segment keeps its colour across runs and dashboards. Twenty colours:
matplotlib's tab10, then the light halves of tab20; two segments of one run share a colour only
when their ids differ by a multiple of twenty.
"""

from __future__ import annotations

PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)


def segment_color(segment_id: int) -> str:
    """Hex colour (`#rrggbb`) of segment `segment_id` (ids start at 1)."""
    return PALETTE[(int(segment_id) - 1) % len(PALETTE)]
