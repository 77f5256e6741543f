"""One self-contained HTML report per run, for the marketer who acts on the segments.

Sections: summary, the data (a histogram per numeric declared column, the shares of each
category and boolean column, pairwise scatters of the numeric clustering features), the
choice of k (every criterion with the chosen k marked), the segments (scatter with centres,
profile indexes against the average), the profile table with names and recommendations,
and what changed since the previous published run, each with plain words beside its figures
(what a criterion means for whoever targets the segments). Images are embedded PNGs
(matplotlib, Agg), each with an `alt` text that says what it shows.

This module assembles the page; `data` reads the run (`load_report_data`), `sections` writes
each section's HTML and `plots` draws the figures.

Nothing here names a column of any particular data set: the run's declaration (the
`dataset` column of `runs`, `Dataset.describe()`; NULL before migration 0004 means `MALL`)
says which columns there are, their labels, units, types and transforms. Per-customer
values come from the published assignment (`current_segments.attributes`, text in declaration order) and segment
statistics from `segment_features` (long format). Each segment keeps one colour throughout,
`palette.segment_color` of its id, as in the views' `segment_color` and the Superset dashboard.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Connection

from segmentation.palette import segment_color
from segmentation.report import sections
from segmentation.report.data import (
    SEGMENT_FEATURE_COLUMNS,
    ReportData,
    _feature,
    load_report_data,
)


def write_report(connection: Connection, run_id: int, path: Path) -> Path:
    """Render the report of `run_id` to `path` (folders created); return the path."""
    data = load_report_data(connection, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path


def _clustering_features(data: ReportData) -> list[str]:
    names = [str(name) for name in (getattr(data.run, "features", None) or [])]
    if not names and len(data.segment_features):
        flagged = data.segment_features[data.segment_features["is_clustering_feature"].fillna(True).astype(bool)]
        names = list(dict.fromkeys(flagged["feature"].astype(str)))
    return names


def _colours(segment_ids) -> dict[int, str]:
    """Each segment's colour (`palette.segment_color`): the same in every figure of the report, in
    every run where the segment keeps its id, and in the views' `segment_color`."""
    return {int(segment_id): segment_color(int(segment_id)) for segment_id in sorted(set(segment_ids))}


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string."""
    if not len(data.segment_features):
        data = dataclasses.replace(data, segment_features=pd.DataFrame(columns=SEGMENT_FEATURE_COLUMNS))
    run = data.run
    dataset = data.dataset
    profiles = data.profiles
    segment_features = data.segment_features
    clustering = [_feature(dataset, name, segment_features) for name in _clustering_features(data)]
    declared_names = dataset.names + [name for name in dict.fromkeys(segment_features["feature"].astype(str))
                                      if name not in dataset.names]
    declared = [_feature(dataset, name, segment_features) for name in declared_names]
    chosen = int(run.k)
    segment_ids = set(profiles["segment_id"].dropna().astype(int))
    segment_ids |= set(segment_features["segment_id"].dropna().astype(int))
    if len(data.customers):
        segment_ids |= set(data.customers["segment_id"].dropna().astype(int))
    colours = _colours(segment_ids)  # the one segment -> colour mapping of every chart
    names = {int(row.segment_id): str(row.segment_name) for row in profiles.itertuples()}

    parts = {
        "Summary": sections.summary_html(data, clustering),
        "The data": sections.data_html(data, clustering),
        "Choosing the number of segments": sections.k_choice_html(data.evaluations, chosen),
        "The segments": sections.segments_html(data, clustering, colours, names),
        "Segment profiles": sections.profiles_html(data, declared),
        "What changed since the last run": sections.changes_html(data, names),
    }
    body = "".join(
        f"<section id='section-{index}'><h2>{html.escape(title)}</h2>{content}</section>"
        for index, (title, content) in enumerate(parts.items(), start=1)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Customer segments – run {html.escape(str(run.run_id))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
.rationale {{ background: #f6f8fa; padding: 0.8em; border-left: 4px solid #4c72b0; }}
.note {{ color: #666; font-size: 0.85em; }}
.explain {{ max-width: 60em; line-height: 1.45; }}
.explain dt {{ font-weight: 600; margin-top: 0.5em; }}
.explain dd {{ margin-left: 1.2em; }}
</style></head>
<body><h1>Customer segments – run {html.escape(str(run.run_id))}</h1>{body}</body></html>
"""
