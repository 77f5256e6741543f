"""One self-contained HTML report per run, for the marketer who acts on the segments.

Marketers first. At the top, the run at a glance (customers, segments, when, and what to know
before acting: held, forced past the health gate, the orders' reference date); then the
segments (one card each: name, size, what sets it apart, advice; profile indexes against the
average; customers by segment), the averages table and what changed since the previous published
run. After them, for whoever checks the method: the run's details, the data (a histogram per
numeric declared column, the shares of each category and boolean column, pairwise scatters of
the numeric clustering features), the choice of k (every criterion with the chosen k marked, or
in words when k was fixed) and a glossary of the criteria and terms. Images are embedded PNGs
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

    # marketers first: the segments and what to do with them; how they were made after
    parts = {
        "The segments": sections.segments_html(data, clustering, colours, names),
        "Segment averages": sections.profiles_html(data, declared),
        "What changed since the last run": sections.changes_html(data, names),
        "About this run": sections.run_details_html(data, clustering),
        "The data": sections.data_html(data, clustering),
        "Choosing the number of segments": sections.k_choice_html(data.evaluations, chosen,
                                                                  getattr(run, "k_selection", None)),
        "Glossary": sections.glossary_html(),
    }
    slugs = {title: title.lower().replace(" ", "-") for title in parts}
    contents = " · ".join(f"<a href='#{slugs[title]}'>{html.escape(title)}</a>" for title in parts)
    body = "".join(
        f"<section id='{slugs[title]}'><h2>{html.escape(title)}</h2>{content}</section>"
        for title, content in parts.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Customer segments – run {html.escape(str(run.run_id))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
td {{ font-variant-numeric: tabular-nums; }}
th {{ background: #f3f3f3; }}
.wide {{ overflow-x: auto; }}
.averages td:nth-child(2) {{ min-width: 10em; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
nav {{ font-size: 0.9em; margin: 0.5em 0 1.5em; }}
.glance th {{ width: 22em; }}
.warning {{ background: #fff4e5; border-left: 4px solid #d9822b; padding: 0.6em 0.8em; max-width: 60em; }}
.segments {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(30em, 1fr)); gap: 0.8em; }}
.segment {{ border: 1px solid #ddd; border-left: 8px solid #888; border-radius: 4px; padding: 0.4em 1em 0.6em;
  line-height: 1.4; }}
.segment h3 {{ margin: 0.3em 0; font-size: 1.1em; }}
.segment p {{ margin: 0.35em 0; }}
.swatch {{ display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; border-radius: 2px; }}
.share {{ display: inline-block; vertical-align: middle; width: 8em; height: 0.7em; margin-left: 0.6em;
  background: #eee; border-radius: 2px; }}
.share span {{ display: block; height: 100%; border-radius: 2px; }}
.rationale {{ background: #f6f8fa; padding: 0.8em; border-left: 4px solid #4c72b0; }}
.note {{ color: #666; font-size: 0.85em; }}
.explain {{ max-width: 60em; line-height: 1.45; }}
.explain dt {{ font-weight: 600; margin-top: 0.5em; }}
.explain dd {{ margin-left: 1.2em; }}
</style></head>
<body><h1>Customer segments – run {html.escape(str(run.run_id))}</h1>
{sections.glance_html(data)}
<nav>{contents}</nav>
{body}</body></html>
"""
