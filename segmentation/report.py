"""One self-contained HTML report per run, for the marketer who acts on the segments.

Sections: summary, the data (distributions, gender split, pairwise scatter), the choice of k
(every criterion with the chosen k marked), the segments (scatter with centres, profile
indexes against the average), the profile table with names and recommendations, and what
changed since the previous published run. Images are embedded PNGs (matplotlib, Agg).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402

from segmentation.errors import SegmentationError  # noqa: E402
from segmentation.features import FEATURE_LABELS  # noqa: E402

SAMPLE_ROWS = 20_000
AXIS_LABELS = {
    "age": "Age (years)",
    "annual_income_k": "Annual income (k$)",
    "spending_score": "Spending score (1-100)",
}


@dataclasses.dataclass
class ReportData:
    run: sa.Row
    evaluations: pd.DataFrame
    profiles: pd.DataFrame
    customers: pd.DataFrame  # a seeded sample of the run's customer rows
    previous_run_id: int | None
    transitions: pd.DataFrame  # from_segment_id, to_segment_id, customer_count


def load_report_data(connection: Connection, run_id: int) -> ReportData:
    """Everything the report shows about `run_id`, read from the tables."""
    run = connection.execute(sa.text("select * from segmentation.runs where run_id = :r"), {"r": run_id}).one_or_none()
    if run is None:
        raise SegmentationError(f"there is no run {run_id}; see `segment runs`")
    if run.k is None:
        raise SegmentationError(f"run {run_id} has no results (status {run.status}); nothing to report")
    read = lambda sql, **params: pd.read_sql_query(sa.text(sql), connection, params={"r": run_id, **params})  # noqa: E731
    evaluations = read("select * from segmentation.k_evaluations where run_id = :r order by k")
    profiles = read("select * from segmentation.segment_profiles where run_id = :r order by segment_id")
    total = run.n_customers or 0
    fraction = min(100.0, 100.0 * SAMPLE_ROWS / max(total, 1))
    sample_clause = "" if fraction >= 100 else f" tablesample bernoulli ({fraction:.6f}) repeatable (42)"
    customers = read(
        "select customer_id, segment_id, gender, age, annual_income_k, spending_score, is_outlier"
        f" from segmentation.customer_segments{sample_clause} where run_id = :r"
    )
    for column in ("age", "annual_income_k", "spending_score"):
        customers[column] = pd.to_numeric(customers[column], errors="coerce")
    previous_run_id = connection.execute(
        sa.text(
            "select run_id from segmentation.runs where status = 'published' and run_id < :r"
            " order by published_at desc, run_id desc limit 1"
        ),
        {"r": run_id},
    ).scalar()
    transitions = pd.DataFrame(columns=["from_segment_id", "to_segment_id", "customer_count"])
    if previous_run_id is not None:
        transitions = read(
            """
            with earlier as (
                select customer_id, segment_id from segmentation.customer_segments where run_id = :p
            ),
            latest as (
                select customer_id, segment_id from segmentation.customer_segments where run_id = :r
            )
            select earlier.segment_id as from_segment_id, latest.segment_id as to_segment_id,
                   count(*) as customer_count
            from earlier
            full join latest on latest.customer_id = earlier.customer_id
            group by 1, 2
            order by 1, 2
            """,
            p=previous_run_id,
        )
    return ReportData(run, evaluations, profiles, customers, previous_run_id, transitions)


def write_report(connection: Connection, run_id: int, path: Path) -> Path:
    """Render the report of `run_id` to `path` (folders created); return the path."""
    data = load_report_data(connection, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path


# --- rendering ----------------------------------------------------------------------------


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{encoded}">'


def _colours(segment_ids) -> dict[int, tuple]:
    palette = plt.get_cmap("tab10")
    return {int(segment_id): palette(index % 10) for index, segment_id in enumerate(sorted(segment_ids))}


def plot_distributions(customers: pd.DataFrame) -> str:
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for axis, column in zip(axes, ("age", "annual_income_k", "spending_score")):
        values = customers[column].dropna()
        axis.hist(values, bins=20, color="#4c72b0", edgecolor="white")
        axis.set_xlabel(AXIS_LABELS[column])
        axis.set_ylabel("Customers")
        axis.set_title(f"{AXIS_LABELS[column].split(' (')[0]} distribution")
    counts = customers["gender"].fillna("Unknown").value_counts()
    axes[3].bar(counts.index, counts.to_numpy(), color=["#dd8452", "#4c72b0", "#999999"][: len(counts)])
    axes[3].set_xlabel("Gender")
    axes[3].set_ylabel("Customers")
    axes[3].set_title("Gender split")
    figure.tight_layout()
    return _png(figure)


def plot_pairs(customers: pd.DataFrame) -> str:
    pairs = [("annual_income_k", "spending_score"), ("age", "spending_score"), ("age", "annual_income_k")]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, (x, y) in zip(axes, pairs):
        axis.scatter(customers[x], customers[y], s=10, alpha=0.5, color="#4c72b0")
        axis.set_xlabel(AXIS_LABELS[x])
        axis.set_ylabel(AXIS_LABELS[y])
        axis.set_title(f"{AXIS_LABELS[y].split(' (')[0]} against {AXIS_LABELS[x].split(' (')[0].lower()}")
    figure.tight_layout()
    return _png(figure)


def plot_k_choice(evaluations: pd.DataFrame, chosen: int) -> str:
    panels = [
        ("inertia", "Inertia (within-segment sum of squares)", "Elbow: inertia by k"),
        ("silhouette", "Mean silhouette (higher is better)", "Silhouette by k"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)", "Davies-Bouldin by k"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)", "Calinski-Harabasz by k"),
        ("gap", "Gap statistic (± 1 standard error)", "Gap statistic by k"),
        ("stability_ari", "Mean adjusted Rand index", "Bootstrap stability by k"),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for axis, (column, label, title) in zip(axes.flat, panels):
        values = evaluations[["k", column]].dropna()
        if column == "gap" and values.size:
            axis.errorbar(values["k"], values[column], yerr=evaluations.loc[values.index, "gap_sd"], marker="o",
                          capsize=3, label=label.split(" (")[0])
        else:
            axis.plot(values["k"], values[column], marker="o", label=label.split(" (")[0])
        axis.axvline(chosen, color="#c44e52", linestyle="--", label=f"chosen k = {chosen}")
        if column == "inertia" and evaluations["is_elbow"].any():
            elbow = evaluations.loc[evaluations["is_elbow"]].iloc[0]
            axis.scatter([elbow["k"]], [elbow["inertia"]], s=120, facecolors="none", edgecolors="black",
                         label=f"elbow (k = {int(elbow['k'])})", zorder=3)
        axis.set_xlabel("Number of segments k")
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def plot_segments(customers: pd.DataFrame, profiles: pd.DataFrame, features: list[str]) -> str:
    numeric = [feature for feature in features if feature in AXIS_LABELS]
    x, y = (numeric + ["annual_income_k", "spending_score"])[:2] if len(numeric) < 2 else numeric[:2]
    if x == y:
        y = "spending_score" if x != "spending_score" else "annual_income_k"
    colours = _colours(profiles["segment_id"])
    names = dict(zip(profiles["segment_id"].astype(int), profiles["segment_name"]))
    figure, axis = plt.subplots(figsize=(11, 6.5))
    for segment_id, members in customers.groupby("segment_id"):
        axis.scatter(members[x], members[y], s=14, alpha=0.6, color=colours[int(segment_id)],
                     label=f"{int(segment_id)}: {names.get(int(segment_id), '')}")
    centre_x = profiles[f"avg_{x}"]
    centre_y = profiles[f"avg_{y}"]
    axis.scatter(centre_x, centre_y, marker="X", s=220, color="black", edgecolors="white", label="segment centre (mean)")
    outliers = customers[customers["is_outlier"].astype(bool)]
    if len(outliers):
        axis.scatter(outliers[x], outliers[y], s=40, facecolors="none", edgecolors="red", label="outlier")
    axis.set_xlabel(AXIS_LABELS[x])
    axis.set_ylabel(AXIS_LABELS[y])
    axis.set_title("Customers by segment")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="Segment")
    figure.tight_layout()
    return _png(figure)


def plot_profile_indexes(profiles: pd.DataFrame) -> str:
    columns = {
        "age_index": "Age",
        "annual_income_index": "Annual income",
        "spending_score_index": "Spending score",
        "female_share_index": "Female share",
    }
    figure, axis = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(columns)
    positions = np.arange(len(profiles))
    for offset, (column, label) in enumerate(columns.items()):
        axis.bar(positions + offset * width, profiles[column].astype(float).fillna(0), width, label=label)
    axis.axhline(100, color="black", linewidth=1, linestyle="--", label="overall average = 100")
    axis.set_xticks(positions + width * (len(columns) - 1) / 2)
    axis.set_xticklabels([f"{int(row.segment_id)}: {row.segment_name}" for row in profiles.itertuples()],
                         rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("Index (segment mean / overall mean × 100)")
    axis.set_title("Segment profiles against the average")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string."""
    run = data.run
    profiles = data.profiles
    features = list(run.features or [])
    chosen = int(run.k)
    imputed = ", ".join(f"{count} {name}" for name, count in (run.n_imputed or {}).items() if count) or "none"
    summary = [
        ("Run", run.run_id),
        ("Status", run.status + (f" ({run.error})" if run.error else "")),
        ("Published at", run.published_at or "not published"),
        ("Customers segmented", f"{run.n_customers:,}"),
        ("Features", ", ".join(FEATURE_LABELS.get(name, name) for name in features)),
        ("Scaling", run.scaling),
        ("Segments (k)", f"{chosen} ({run.k_selection})"),
        ("Silhouette", _cell(run.silhouette)),
        ("Missing values imputed (median)", imputed),
        ("Outliers flagged", run.n_outliers),
        ("Seed (random_state)", run.random_state),
    ]
    summary_html = "<table>" + "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>" for label, value in summary
    ) + "</table>"
    evaluation_columns = ["k", "inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "gap", "gap_sd",
                          "stability_ari", "votes", "is_chosen"]
    profile_table = profiles[
        ["segment_id", "segment_name", "customer_count", "customer_share", "avg_age", "avg_annual_income_k",
         "avg_spending_score", "female_share", "distinguishing_features", "recommendation"]
    ].rename(columns={
        "segment_id": "id", "segment_name": "name", "customer_count": "customers", "customer_share": "share",
        "avg_age": "mean age (years)", "avg_annual_income_k": "mean income (k$)",
        "avg_spending_score": "mean spending (1-100)", "female_share": "female share",
        "distinguishing_features": "what sets it apart",
    })
    changes = _changes_html(data)
    sections = {
        "Summary": f"{summary_html}<p class='rationale'>{html.escape(run.rationale or '')}</p>",
        "The data": plot_distributions(data.customers) + plot_pairs(data.customers) + _sample_note(data),
        "Choosing the number of segments": plot_k_choice(data.evaluations, chosen)
        + _table(data.evaluations[[c for c in evaluation_columns if c in data.evaluations]]),
        "The segments": plot_segments(data.customers, profiles, features) + plot_profile_indexes(profiles),
        "Segment profiles": _table(profile_table),
        "What changed since the last run": changes,
    }
    body = "".join(
        f"<section id='section-{index}'><h2>{html.escape(title)}</h2>{content}</section>"
        for index, (title, content) in enumerate(sections.items(), start=1)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Customer segments – run {run.run_id}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
.rationale {{ background: #f6f8fa; padding: 0.8em; border-left: 4px solid #4c72b0; }}
.note {{ color: #666; font-size: 0.85em; }}
</style></head>
<body><h1>Customer segments – run {run.run_id}</h1>{body}</body></html>
"""


def _sample_note(data: ReportData) -> str:
    shown, total = len(data.customers), data.run.n_customers or 0
    if shown == 0:
        text = "This run's per-customer rows were pruned (setting keep_customer_rows_runs): customer plots are empty."
    elif shown < total:
        text = f"Plots use {shown:,} of {total:,} customers (a seeded sample)."
    else:
        text = f"Plots use all {shown:,} customers."
    return f"<p class='note'>{html.escape(text)}</p>"


def _changes_html(data: ReportData) -> str:
    if data.previous_run_id is None:
        return "<p>This is the first published run: there is nothing to compare with yet.</p>"
    run = data.run
    profiles = data.profiles
    drift = profiles[["segment_id", "segment_name", "previous_customer_count", "customer_count", "centroid_shift"]]
    drift = drift.rename(columns={
        "segment_id": "id", "segment_name": "name", "previous_customer_count": "customers before",
        "customer_count": "customers now", "centroid_shift": "centre shift (scaled units)",
    })
    matrix = data.transitions.copy()
    matrix["from_segment_id"] = matrix["from_segment_id"].map(lambda v: "new customer" if pd.isna(v) else f"was {int(v)}")
    matrix["to_segment_id"] = matrix["to_segment_id"].map(lambda v: "no longer segmented" if pd.isna(v) else f"now {int(v)}")
    pivot = matrix.pivot_table(index="from_segment_id", columns="to_segment_id", values="customer_count",
                               aggfunc="sum", fill_value=0).reset_index().rename(columns={"from_segment_id": ""})
    return (
        f"<p>Compared with run {data.previous_run_id}: segment size stability index (PSI) "
        f"{_cell(run.size_psi)} (below 0.1 stable, above 0.25 a large shift); largest centre shift "
        f"{_cell(run.max_centroid_shift)}.</p>"
        + _table(drift)
        + "<h3>Customers moved between segments</h3>"
        + _table(pivot)
    )
