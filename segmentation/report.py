"""One self-contained HTML report per run, for the marketer who acts on the segments.

Sections: summary, the data (a histogram per numeric declared column, the shares of each
category and boolean column, pairwise scatters of the numeric clustering features), the
choice of k (every criterion with the chosen k marked), the segments (scatter with centres,
profile indexes against the average), the profile table with names and recommendations,
and what changed since the previous published run, each with plain words beside its figures
(what a criterion means for whoever targets the segments). Images are embedded PNGs
(matplotlib, Agg), each with an `alt` text that says what it shows.

This module reads the run (`load_report_data`) and assembles the page; `report_sections`
writes each section's HTML and `report_plots` draws the figures.

Nothing here names a column of any particular data set: the run's declaration (the
`dataset` column of `runs`, `Dataset.describe()`; NULL before migration 0004 means `MALL`)
says which columns there are, their labels, units, types and transforms. Per-customer
values come from `customer_segments.attributes` (text, in declaration order) and segment
statistics from `segment_features` (long format). Each segment keeps one colour throughout,
`palette.segment_color` of its id, as in the views' `segment_color` and the Superset dashboard.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation import report_sections as sections
from segmentation.dataset import BOOLEAN_WORDS, MALL, Column, Dataset, from_description
from segmentation.errors import SegmentationError
from segmentation.palette import segment_color
from segmentation.report_plots import _present

SAMPLE_ROWS = 20_000
TRANSITIONS_WORK_MEM = "256MB"  # the hash of the earlier run's (customer, segment) pairs, shared by the workers
SEGMENT_FEATURE_COLUMNS = ["run_id", "segment_id", "position", "feature", "category", "label", "unit",
                           "is_clustering_feature", "mean", "median", "index_value", "z_score", "level"]


@dataclasses.dataclass
class ReportData:
    """What the report shows about one run.

    `run` is the run's row of `segmentation_internal.runs` (anything with its columns as attributes);
    `customers` a seeded sample of its customer rows with customer_id, segment_id, is_outlier
    and one column per declared column (numbers as floats, booleans as True/False, categories
    as text; missing values NaN/None); `segment_features` the run's rows of
    `segmentation_internal.segment_features`. `dataset` None means: the run's stored declaration.
    """

    run: Any
    evaluations: pd.DataFrame
    profiles: pd.DataFrame
    customers: pd.DataFrame
    previous_run_id: int | None
    transitions: pd.DataFrame  # from_segment_id, to_segment_id, customer_count
    segment_features: pd.DataFrame
    dataset: Dataset | None = None
    # Did the previous published run segment on the same features and declaration? If not, this
    # run's ids were numbered afresh and `transitions` compares two segmentations, not moves.
    previous_comparable: bool = True
    previous_features: tuple[str, ...] = ()
    comparable_run_id: int | None = None  # the latest earlier published run on the same features

    def __post_init__(self) -> None:
        if self.dataset is None:
            self.dataset = from_description(getattr(self.run, "dataset", None))


def load_report_data(connection: Connection, run_id: int) -> ReportData:
    """Everything the report shows about `run_id`, read from the tables."""
    run = connection.execute(sa.text("select * from segmentation_internal.runs where run_id = :r"), {"r": run_id}).one_or_none()
    if run is None:
        raise SegmentationError(f"there is no run {run_id}; see `segment runs`")
    if run.k is None:
        raise SegmentationError(f"run {run_id} has no results (status {run.status}); nothing to report")
    dataset = from_description(run._mapping.get("dataset"))
    read = lambda sql, **params: pd.read_sql_query(sa.text(sql), connection, params={"r": run_id, **params})  # noqa: E731
    evaluations = read("select * from segmentation_internal.k_evaluations where run_id = :r order by k")
    profiles = read("select * from segmentation_internal.segment_profiles where run_id = :r order by segment_id")
    segment_features = read(
        "select * from segmentation_internal.segment_features where run_id = :r order by segment_id, position"
    )
    total = run.n_customers or 0
    fraction = min(100.0, 100.0 * SAMPLE_ROWS / max(total, 1))
    sample_clause = "" if fraction >= 100 else f" tablesample bernoulli ({fraction:.6f}) repeatable (42)"
    # attributes[i] by position only: no declared name is ever spliced into SQL
    attributes = "".join(f", attributes[{index}] as a{index}" for index in range(1, len(dataset.columns) + 1))
    raw = read(
        f"select customer_id, segment_id, is_outlier{attributes}"
        f" from segmentation_internal.customer_segments{sample_clause} where run_id = :r"
    )
    customers = customers_from_attributes(raw, dataset)
    earlier = connection.execute(
        sa.text(
            "select run_id, features, features = :features"
            " and coalesce(dataset_fingerprint, :mall) = coalesce(:fingerprint, :mall) as comparable"
            " from segmentation_internal.runs where status = 'published' and run_id < :r"
            " order by published_at desc, run_id desc"
        ),
        {"r": run_id, "features": list(run.features or []), "fingerprint": run._mapping.get("dataset_fingerprint"),
         "mall": MALL.fingerprint()},
    ).all()
    previous_run_id = earlier[0].run_id if earlier else None
    comparable_run_id = next((row.run_id for row in earlier if row.comparable), None)
    transitions = pd.DataFrame(columns=["from_segment_id", "to_segment_id", "customer_count"])
    if previous_run_id is not None:
        transitions = read_transitions(connection, run_id, previous_run_id)
    return ReportData(
        run, evaluations, profiles, customers, previous_run_id, transitions, segment_features, dataset,
        previous_comparable=not earlier or bool(earlier[0].comparable),
        previous_features=tuple(earlier[0].features or ()) if earlier else (), comparable_run_id=comparable_run_id,
    )


def read_transitions(connection: Connection, run_id: int, previous_run_id: int) -> pd.DataFrame:
    """Customers per (segment in `previous_run_id`, segment in `run_id`), None for a customer
    new in the run or gone from it; ordered by both ids, None last.

    A left join from the run's partition (PostgreSQL 15 runs it in parallel workers, but not
    the full join of both partitions) and each earlier segment's size from its profile: the
    customers who left a segment are its size less those found again. At 10M customers per run the full join took
    about 30 s on one core.
    """
    connection.exec_driver_sql(f"set local work_mem = '{TRANSITIONS_WORK_MEM}'")
    found = pd.read_sql_query(
        sa.text(
            """
            select earlier.segment_id as from_segment_id, latest.segment_id as to_segment_id,
                   count(*) as customer_count
            from segmentation_internal.customer_segments as latest
            left join (
                select customer_id, segment_id from segmentation_internal.customer_segments where run_id = :p
            ) as earlier on earlier.customer_id = latest.customer_id
            where latest.run_id = :r
            group by 1, 2
            """
        ),
        connection,
        params={"r": run_id, "p": previous_run_id},
    )
    sizes = pd.read_sql_query(  # the earlier run's segment sizes as it counted them, not a second scan
        sa.text(
            "select segment_id as from_segment_id, customer_count as size from segmentation_internal.segment_profiles"
            " where run_id = :p"
        ),
        connection,
        params={"p": previous_run_id},
    )
    kept = found.dropna(subset=["from_segment_id"]).groupby("from_segment_id")["customer_count"].sum()
    sizes["customer_count"] = sizes["size"] - sizes["from_segment_id"].map(kept).fillna(0).astype("int64")
    left = sizes.loc[sizes["customer_count"] > 0, ["from_segment_id", "customer_count"]].assign(to_segment_id=None)
    transitions = pd.concat([found, left[["from_segment_id", "to_segment_id", "customer_count"]]], ignore_index=True)
    return transitions.sort_values(["from_segment_id", "to_segment_id"], na_position="last", kind="stable").reset_index(
        drop=True
    )


def customers_from_attributes(raw: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """Typed customer rows from customer_id, segment_id, is_outlier and a1..an (attribute text).

    Numbers become floats (NaN where unknown or unreadable), booleans True/False (None where
    unknown), categories stay text (None where unknown).
    """
    customers = pd.DataFrame({
        "customer_id": raw["customer_id"].astype(object) if "customer_id" in raw else pd.Series(dtype=object),
        "segment_id": raw["segment_id"] if "segment_id" in raw else pd.Series(dtype="int64"),
        "is_outlier": raw["is_outlier"].fillna(False).astype(bool) if "is_outlier" in raw else pd.Series(dtype=bool),
    })
    for index, column in enumerate(dataset.columns, start=1):
        text = raw[f"a{index}"] if f"a{index}" in raw else pd.Series([None] * len(raw), dtype=object)
        text = text.astype(object).where(text.notna(), None)
        if column.is_numeric:
            customers[column.name] = pd.to_numeric(text, errors="coerce").astype(float)
        elif column.type == "boolean":
            customers[column.name] = text.map(lambda v: None if v is None else BOOLEAN_WORDS.get(str(v).strip().lower()))
        else:
            customers[column.name] = text
    return customers


def write_report(connection: Connection, run_id: int, path: Path) -> Path:
    """Render the report of `run_id` to `path` (folders created); return the path."""
    data = load_report_data(connection, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path


# --- what the declaration says ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Feature:
    """A feature as the report shows it: declared if possible, else as the tables name it."""

    name: str
    label: str  # with unit: for axes, legends and table headers
    kind: str  # "numeric", "category" or "boolean"
    log: bool = False


def _feature(dataset: Dataset, name: str, segment_features: pd.DataFrame) -> _Feature:
    try:
        column: Column = dataset.column(name)
    except KeyError:
        rows = segment_features[segment_features["feature"] == name] if len(segment_features) else segment_features
        label, unit = (rows["label"].iloc[0], rows["unit"].iloc[0]) if len(rows) else (name.replace("_", " "), None)
        label = str(label) if _present(label) else name.replace("_", " ")
        label = f"{label} ({unit})" if _present(unit) else label
        numeric = len(rows) > 0 and rows["category"].isna().all()
        return _Feature(name, label, "numeric" if numeric else "category")
    kind = "numeric" if column.is_numeric else column.type
    return _Feature(name, column.axis_label, kind, column.transform == "log")


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
