"""The report's HTML sections, in the order a marketer reads them: the run at a glance, the
segments (a card each with its size, what sets it apart and the advice; their indexes; the
customers by segment), the averages table, what changed since the previous run; then the run's
details, the data, the choice of k and a glossary. Each with plain words beside its figures.
"""

from __future__ import annotations

import html
import itertools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from segmentation.display import decimals, figure, percent
from segmentation.report.data import _present
from segmentation.report.plots import (
    INDEX_AXIS_LIMIT,
    _count,
    plot_category_shares,
    plot_histograms,
    plot_k_choice,
    plot_pairs,
    plot_profile_indexes,
    plot_segment_sizes,
    plot_segments,
    spread,
)

if TYPE_CHECKING:
    from segmentation.report.data import ReportData, _Feature

MAX_PAIRS = 3


def _table(frame: pd.DataFrame, css_class: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    opening = f"<table class='{css_class}'>" if css_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value) -> str:
    """One figure on its own: `display.decimals` of itself (three significant digits, at least
    one decimal), thousands separators; whole numbers (counts) with separators only."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return figure(float(value), decimals([float(value)]))
    return str(value)


def _column_figures(values: pd.Series) -> list[str]:
    """A column of figures shown side by side, with the decimals of `display.decimals` for all of
    them (the rule of the profile table and the views): 269.7, 157.7, 65.6; 0.555, 0.467."""
    numbers = pd.to_numeric(values, errors="coerce")
    places = decimals(numbers.dropna().tolist())
    return ["–" if pd.isna(value) else figure(float(value), places) for value in numbers]


def _percent(value) -> str:
    """A share as the command line and the views' `_pct` columns print it (41.2%)."""
    return "–" if not _present(value) else f"{percent(float(value))}%"



def profile_table(data: ReportData, declared: list[_Feature]) -> pd.DataFrame:
    """id, name, customers, share, a mean per numeric feature, the shares of each category feature:
    figures only (what sets each segment apart and the advice are in the segment cards, in full)."""
    profiles = data.profiles
    frame = data.segment_features
    table = pd.DataFrame({
        "Segment": profiles["segment_id"].astype(int).to_numpy(),
        "Name": profiles["segment_name"].to_numpy(),
        "Customers": [_count(value) for value in profiles["customer_count"]],
        "Share of customers": [_percent(value) for value in profiles["customer_share"]],
    })
    places = {}  # each feature's averages with the decimals the views show them with
    for feature in declared:
        rows = frame[frame["feature"] == feature.name] if len(frame) else frame
        if not len(rows):
            continue
        places[feature.name] = decimals(pd.to_numeric(rows[rows["category"].isna()]["mean"], errors="coerce").dropna())
        cells = []
        for segment_id in table["Segment"]:
            own = rows[rows["segment_id"].astype(int) == segment_id]
            if feature.kind == "numeric":
                mean = pd.to_numeric(own[own["category"].isna()]["mean"], errors="coerce").dropna()
                cells.append(figure(float(mean.iloc[0]), places[feature.name]) if len(mean) else "–")
            elif feature.kind == "boolean":
                share = pd.to_numeric(own[own["category"].astype(str).str.lower() == "true"]["mean"], errors="coerce")
                cells.append(_percent(share.iloc[0]) if len(share.dropna()) else "–")
            else:
                own = own.sort_values("position")
                # a no-break space: a share never wraps away from its category
                cells.append(", ".join(f"{row.category}\u00a0{_percent(row.mean)}" for row in own.itertuples()) or "–")
        header = {"numeric": f"Average {feature.label}", "boolean": f"{feature.label}: share yes"}.get(
            feature.kind, f"{feature.label}: shares")
        table[header] = cells
    return table


def _text(value) -> str:
    return str(value) if _present(value) and str(value).strip() else "–"


def segment_cards_html(data: ReportData, colours: dict[int, str]) -> str:
    """One card per segment, in its colour: name, customers and share (with a bar of the share),
    what sets it apart and the advice, each in full sentences however many segments there are."""
    cards = []
    for row in data.profiles.itertuples():
        segment_id = int(row.segment_id)
        colour = colours.get(segment_id, "#888888")
        share = float(row.customer_share) if _present(getattr(row, "customer_share", None)) else 0.0
        apart = _text(getattr(row, "distinguishing_features", None))
        advice = _text(getattr(row, "recommendation", None))
        cards.append(
            f"<article class='segment' id='segment-{segment_id}' style='border-left-color: {colour}'>"
            f"<h3><span class='swatch' style='background: {colour}'></span>{segment_id} · "
            f"{html.escape(str(row.segment_name))}</h3>"
            f"<p class='size'><strong>{_count(row.customer_count)}</strong> customers · "
            f"<strong>{_percent(row.customer_share)}</strong> of all"
            f"<span class='share' title='{_percent(row.customer_share)}'><span style='width: "
            f"{max(0.0, min(share, 1.0)) * 100:.1f}%; background: {colour}'></span></span></p>"
            f"<p class='apart'><strong>What sets it apart:</strong> {html.escape(apart)}</p>"
            f"<p class='advice'><strong>Advice:</strong> {html.escape(advice)}</p></article>"
        )
    return f"<div class='segments'>{''.join(cards)}</div>"


def glance_html(data: ReportData) -> str:
    """The first lines of the page: how many customers in how many segments, when, from what; and
    whatever a marketer must know before acting on them (held, forced, the reference date)."""
    run = data.run
    status = str(getattr(run, "status", "") or "")
    error = getattr(run, "error", None)
    published = _when(getattr(run, "published_at", None))
    facts = [
        ("Customers segmented", _count(getattr(run, "n_customers", None))),
        ("Segments", f"{int(run.k)}" + (" (fixed with --k: not chosen by the job)"
                                         if getattr(run, "k_selection", None) == "fixed" else "")),
        ("Published at", published or "not published"),
    ]
    if status != "published":
        facts.append(("Status", status + (f" ({error})" if error else "")))
    if getattr(run, "source_name", None):
        facts.append(("Source", run.source_name))
    if getattr(run, "as_of", None):  # a run on orders: recency, frequency and monetary value are as of this day
        facts.append(("Reference date (as_of): orders before it count", str(run.as_of)))
    if getattr(run, "forced_reason", None):
        facts.append(("Published despite the health gate (--force-publish)", run.forced_reason))
    table = "<table class='glance'>" + "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>" for label, value in facts
    ) + "</table>"
    warnings = []
    if getattr(run, "forced_reason", None):
        warnings.append("These segments were published although the health gate would have held them (the reason "
                        "is above): check them before a campaign relies on them.")
    if status and status != "published":
        warnings.append(f"This run was not published (status {status}): the segments below are not the ones "
                        "the views and dashboards show.")
    return table + "".join(f"<p class='warning'>{html.escape(text)}</p>" for text in warnings)


def run_details_html(data: ReportData, clustering: list[_Feature]) -> str:
    """The run's technical record: declaration, features, scaling, k, quality, imputation, seed."""
    run, dataset = data.run, data.dataset
    labels = {column.name: column.label for column in dataset.columns}
    imputed = ", ".join(
        f"{count:,} {labels.get(name, name)}" for name, count in (getattr(run, "n_imputed", None) or {}).items()
        if count
    ) or "none"
    error = getattr(run, "error", None)
    summary = [
        ("Run", run.run_id),
        ("Status", f"{run.status}" + (f" ({error})" if error else "")),
        ("Published at", _when(getattr(run, "published_at", None)) or "not published"),
    ]
    if getattr(run, "source_name", None):
        summary.append(("Source", run.source_name))
    summary += [
        ("Customers segmented", _count(getattr(run, "n_customers", None))),
        ("Customer id column", f"{dataset.id_column} ({dataset.id_type})"),
        ("Declared columns", ", ".join(f"{column.axis_label} [{column.type}]" for column in dataset.columns)),
        ("Clustering features", ", ".join(feature.label for feature in clustering) or "–"),
        ("Scaling", getattr(run, "scaling", None) or "–"),
        ("Segments (k)", f"{int(run.k)} ({getattr(run, 'k_selection', None) or '–'})"),
        ("Silhouette", f"{_cell(getattr(run, 'silhouette', None))}: {silhouette_in_words(getattr(run, 'silhouette', None))}"
         + _against_reference(data.evaluations, run)),
        ("Missing values imputed (median)", imputed),
    ]
    if _present(getattr(run, "reject_share", None)):
        summary.append(("Rows rejected at import", _percent(run.reject_share)))
    summary += [
        ("Outliers flagged", _count(getattr(run, "n_outliers", None))),
        ("Seed (random_state)", getattr(run, "random_state", None) if _present(getattr(run, "random_state", None)) else "–"),
    ]
    table = "<table>" + "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>" for label, value in summary
    ) + "</table>"
    return f"{table}<p class='rationale'>{html.escape(getattr(run, 'rationale', None) or '')}</p>"


def _against_reference(evaluations: pd.DataFrame, run) -> str:
    """The chosen k's silhouette on the structureless reference, in words (empty if not measured)."""
    if "reference_silhouette" not in evaluations or run.k is None:
        return ""
    chosen = evaluations[evaluations["k"] == run.k]
    if chosen.empty or not _present(chosen["reference_silhouette"].iloc[0]):
        return ""
    return (f"; {_cell(chosen['reference_silhouette'].iloc[0])} for the same number of segments on the data with each"
            " feature shuffled on its own (no structure)")


def _when(moment) -> str | None:
    """A timestamp to the minute, with its time zone; text as it is."""
    if moment is None or isinstance(moment, str):
        return moment
    return f"{moment:%Y-%m-%d %H:%M} {moment.tzname() or ''}".strip()


def silhouette_in_words(value) -> str:
    """What a silhouette score means for someone who targets the segments."""
    if not _present(value):
        return "not measured"
    value = float(value)
    if value >= 0.5:
        return "customers clearly belong to their segment"
    if value >= 0.25:
        return "usable segments that overlap at their edges"
    return "segments that overlap a good deal (common with many columns; the gain over structureless data says whether they are real)"


def _explain(text: str) -> str:
    return f"<p class='explain'>{html.escape(text)}</p>"


def data_html(data: ReportData, clustering: list[_Feature]) -> str:
    customers, dataset = data.customers, data.dataset
    if not len(customers):
        return _sample_note(data)
    numeric = [column for column in dataset.columns if column.is_numeric]
    categorical = [column for column in dataset.columns if not column.is_numeric]
    parts = [_explain(
        "How the customers spread over each column before any segmentation: tall bars are common values. "
        "The scatters pair the features the segments are built on; clumps of dots there are what the "
        "segmentation turns into segments.")]
    if numeric:
        parts.append(plot_histograms(customers, numeric))
    if categorical:
        parts.append(plot_category_shares(customers, categorical))
    numeric_clustering = [dataset.column(f.name) for f in clustering if f.kind == "numeric" and f.name in dataset.names]
    pairs = list(itertools.combinations(numeric_clustering[:MAX_PAIRS], 2))[:MAX_PAIRS]
    if pairs:
        parts.append(plot_pairs(customers, pairs))
    else:
        parts.append("<p class='note'>Pairwise scatters need two numeric clustering features; this run has "
                     f"{len(numeric_clustering)}.</p>")
    return "".join(parts) + _sample_note(data)


# What each model-selection criterion says, in words a marketer can act on.
CRITERIA = (
    ("Silhouette (from -1 to 1, higher is better)",
     "For each customer: how much closer it is to its own segment than to the next one, averaged over "
     "customers. Above 0.5 customers clearly belong to their segment, so a campaign aimed at one segment "
     "reaches people who really share its profile; 0.25 to 0.5 the segments are usable but overlap at their "
     "edges; lower values are common in real data with many columns, and what counts is the gain below."),
    ("Silhouette gain over the reference (higher is better)",
     "K-Means finds segments in any data, even in data without any. The job shuffles each feature on its own "
     "(every column keeps its values, only the customers' profiles are lost), segments that structureless copy "
     "the same way and subtracts its silhouette. The number of segments chosen is the smallest whose gain is "
     "within a tenth of the best (two segments only when they stand out from every larger number); a run whose "
     "gain is below 0.05 (setting min_silhouette_gain), or that a shuffled copy matches, is held, not published."),
    ("Within-segment spread (inertia) and its elbow",
     "How far customers lie from their segment's centre, in total. It always falls as segments are added; "
     "the elbow (circled) is where one more segment stops buying much. Beyond it, new segments split real "
     "groups rather than find new ones."),
    ("Davies-Bouldin (lower is better)",
     "How much segments overlap compared with how tight they are: low means each segment is compact and far "
     "from the others."),
    ("Calinski-Harabasz (higher is better)",
     "The spread between segment centres against the spread inside segments: higher means more distinct segments."),
    ("Gap statistic",
     "How much tighter the segments are than those found in the same structureless copies; the smallest number "
     "of segments whose gap is within one standard error of the next one's is what this criterion prefers."),
    ("Stability (from 0 to 1)",
     "The job refits on resampled customers and checks how often two customers land together again (adjusted "
     "Rand index; 1 = always). Below 0.75 (setting min_stability) a number of segments cannot be chosen: its "
     "segments would change from night to night by chance."),
)

EVALUATION_TITLES = {
    "k": "Segments (k)", "inertia": "Within-segment spread (inertia)", "silhouette": "Silhouette",
    "davies_bouldin": "Davies-Bouldin", "calinski_harabasz": "Calinski-Harabasz", "gap": "Gap statistic",
    "gap_sd": "Gap standard error", "stability_ari": "Stability (mean ARI)",
    "reference_silhouette": "Silhouette of the shuffled reference", "silhouette_gain": "Silhouette gain",
    "votes": "Other criteria preferring it", "is_chosen": "Chosen",
}


def k_choice_html(evaluations: pd.DataFrame, chosen: int, k_selection: str | None = None) -> str:
    """How k was chosen: the criteria's curves over every candidate with the chosen k marked, and
    their table; when only one k was scored (fixed by `--k`, or kept from an earlier run without its
    candidates) no one-point curves, the reason in words and that k's scores."""
    candidates = sorted(set(evaluations["k"].dropna().astype(int))) if "k" in evaluations else []
    shown = [column for column in EVALUATION_TITLES if column in evaluations
             and (len(candidates) > 1 or column not in ("votes", "is_chosen"))]  # nothing to vote on alone
    table = evaluations[shown].copy()
    if "is_chosen" in table:
        table["is_chosen"] = table["is_chosen"].map(lambda value: "✓ chosen" if value is True or value == 1 else "")
    for column in table.columns:
        if column == "k":
            table["k"] = table["k"].astype(int)
        elif column in ("votes",):
            table[column] = [_count(value) for value in table[column]]
        elif column != "is_chosen":
            table[column] = _column_figures(table[column])
    table = _table(table.rename(columns=EVALUATION_TITLES))
    glossary = " What each criterion means is in the glossary at the end."
    if len(candidates) < 2:
        if k_selection == "fixed":
            why = (f"The number of segments was fixed at {chosen} (segment run --k {chosen}, or the k setting): the "
                   "job did not compare numbers of segments, so there are no curves to show.")
        elif k_selection == "kept":
            why = (f"The model, and with it k = {chosen}, was kept from an earlier run (the reason is under About "
                   "this run) whose candidates were not stored: there is nothing to compare it with, so there are no "
                   "curves to show.")
        else:
            why = (f"Only k = {chosen} was scored for this run: there is nothing to compare it with, so there are no "
                   "curves to show.")
        return (_explain(why + glossary + f" The scores of these {chosen} segments:")
                + f"<div class='wide'>{table}</div>")
    intro = _explain(
        "K-Means must be told how many segments to make. The job tried every number from "
        f"{candidates[0]} to {candidates[-1]}, scored each with the criteria charted below, and chose {chosen} (the dashed "
        "red line) on the silhouette gain over structureless data; the other criteria are shown beside it." + glossary)
    return intro + plot_k_choice(evaluations, chosen) + f"<div class='wide'>{table}</div>"


# Words a marketer meets in the report, beside the criteria.
TERMS = (
    ("Index (overall average = 100)",
     "A segment's average divided by the average of all customers, times 100: 150 means 50% above average, 50 "
     "half the average. For a category it compares the segment's share of that category with everyone's share, "
     "so a category few customers have can reach several hundred in a segment that holds most of them."),
    ("Segment centre", "The segment's average customer: the mean of each feature over its members."),
    ("Outlier", "A customer far from its own segment's centre: check it before targeting it with that segment."),
    ("Segment size stability (PSI)", "How much the segments' shares of customers changed since the previous "
     "published run: below 0.1 stable, 0.1 to 0.25 noticeable, above 0.25 a lot (the run is then held)."),
)


def glossary_html() -> str:
    items = "".join(f"<dt>{html.escape(title)}</dt><dd>{html.escape(text)}</dd>" for title, text in TERMS + CRITERIA)
    return f"<dl class='explain'>{items}</dl>"


def segments_html(data: ReportData, clustering: list[_Feature], colours: dict[int, str],
                  names: dict[int, str]) -> str:
    """The segments: a card each (size, what sets it apart, advice), their indexes against the
    average, and the customers by segment (a scatter, or the sizes with fewer than two numeric features)."""
    dataset = data.dataset
    numeric = [dataset.column(f.name) for f in clustering if f.kind == "numeric" and f.name in dataset.names]
    parts = [segment_cards_html(data, colours)]
    if clustering and len(data.segment_features) and colours:
        parts.append("<h3>What sets each segment apart, in figures</h3>" + _explain(
            "Each bar compares the segment's average with the average of all customers (the dashed line at 100), "
            "and its figure is written beside it: 150 means 50% above average, 50 half the average. The longest "
            f"bars are where the segment's name comes from. A bar beyond {INDEX_AXIS_LIMIT} is cut at the edge, "
            "hatched, and its true figure written beside it, so the other bars keep a readable scale."))
        parts.append(plot_profile_indexes(data, clustering, colours, names))
    else:
        parts.append("<p class='note'>This run has no per-feature segment statistics to compare.</p>")
    if len(numeric) >= 2:
        # stable sort: ties keep declaration order
        x, y = sorted(numeric, key=lambda column: -spread(data, column))[:2]
        parts.append("<h3>Customers by segment</h3>" + _explain(
            "Each dot is a customer, in its segment's colour (the same colour throughout this report and in "
            "the dashboards' segment_color). A cross marks each segment's centre: its average customer. "
            "Customers circled in red are outliers, far from their own segment's centre: check them before "
            "targeting them with that segment."))
        parts.append(plot_segments(data, x, y, colours, names))
    else:
        parts.append("<h3>Segment sizes</h3>" + _explain("Customers per segment, each in its segment's colour."))
        parts.append(plot_segment_sizes(data.profiles, colours))
    return "".join(parts)


def profiles_html(data: ReportData, declared: list[_Feature]) -> str:
    return _explain(
        "One row per segment: its size and share of all customers and its averages in the data's own units "
        "(each column with the decimals that tell its segments apart).") + \
        f"<div class='wide'>{_table(profile_table(data, declared), 'averages')}</div>"


def _sample_note(data: ReportData) -> str:
    shown, total = len(data.customers), getattr(data.run, "n_customers", None) or 0
    if shown == 0:
        text = "This run's customer sample was pruned (setting keep_customer_rows_runs): customer plots are empty."
    elif shown < total:
        text = f"Plots use {shown:,} of {total:,} customers (a seeded sample of those the model was fitted on)."
    else:
        text = f"Plots use all {shown:,} customers."
    return f"<p class='note'>{html.escape(text)}</p>"


PSI_IN_WORDS = ("Segment size stability (PSI) compares each segment's share of customers with that run: below "
                "0.1 the sizes are stable, 0.1 to 0.25 they changed noticeably, above 0.25 (setting max_size_psi) "
                "they changed a lot and the run is held unless forced. The centre shift says how far a segment's "
                "average customer moved, in standard deviations of the features.")


def changes_html(data: ReportData, names: dict[int, str]) -> str:
    """Drift against the previous published run, and where its customers are now.

    When the previous run used other features or another declaration, this run's segments were
    numbered afresh: the table then shows how two different segmentations overlap, not moves.
    """
    run = data.run
    if data.previous_run_id is None:
        return ("<p>This is the first published run: there is nothing to compare with yet, so the segment size "
                "stability (PSI) and the centre shifts are blank.</p>")
    psi = getattr(run, "size_psi", None)
    parts = []
    if data.previous_comparable:
        parts.append(f"<p>Compared with run {data.previous_run_id}: segment size stability (PSI) {_cell(psi)}; "
                     f"largest centre shift {_cell(getattr(run, 'max_centroid_shift', None))}.</p>")
    else:
        earlier = ", ".join(str(name) for name in data.previous_features) or "other features"
        now = ", ".join(str(name) for name in (getattr(run, "features", None) or ())) or "other features"
        parts.append(
            f"<p><strong>The segments were numbered afresh.</strong> Run {data.previous_run_id} segmented on "
            f"{html.escape(earlier)}; this run on {html.escape(now)} (or under another data-set declaration). "
            "Its segments are new segments: a segment id here is not the segment that had that id in run "
            f"{data.previous_run_id}, and nobody moved between the same segments.</p>")
        if data.comparable_run_id is not None and _present(psi):
            parts.append(f"<p>Sizes and centres are compared with run {data.comparable_run_id}, the latest "
                         f"published run on the same features: PSI {_cell(psi)}; largest centre shift "
                         f"{_cell(getattr(run, 'max_centroid_shift', None))}.</p>")
        else:
            parts.append("<p>Segment size stability (PSI) and centre shifts are blank: no earlier published run "
                         "segmented on the same features and declaration, so there is nothing comparable.</p>")
    if data.previous_comparable or (data.comparable_run_id is not None and _present(psi)):
        drift = data.profiles[["segment_id", "segment_name", "previous_customer_count", "customer_count",
                               "centroid_shift"]].copy()
        for column in ("previous_customer_count", "customer_count"):
            drift[column] = [_count(value) for value in drift[column]]
        drift["centroid_shift"] = _column_figures(drift["centroid_shift"])
        drift = drift.rename(columns={
            "segment_id": "Segment", "segment_name": "Name", "previous_customer_count": "Customers before",
            "customer_count": "Customers now", "centroid_shift": "Centre shift (standard deviations)",
        })
        parts.append(_explain(PSI_IN_WORDS) + _table(drift))
    if data.previous_comparable:
        parts.append("<h3>Customers moved between segments</h3>" + _explain(
            f"Rows: the segment a customer was in at run {data.previous_run_id}; columns: where it is now. "
            "Each cell gives the customers and their share of the row."))
    else:
        parts.append(f"<h3>How run {data.previous_run_id}'s segments map onto the new ones</h3>" + _explain(
            "Rows: the old segmentation's segments; columns: this run's. The ids are not the same segments, "
            "so read this as how the two segmentations overlap, not as customers moving."))
    if len(data.transitions):
        parts.append(f"<div class='wide'>{_table(_transition_table(data.transitions, names))}</div>")
    else:  # counted when a run publishes (`segment_transitions`)
        parts.append("<p class='note'>No moves to show: they are counted when a run publishes, and this run "
                     f"was not published (status {html.escape(str(getattr(run, 'status', '')))}).</p>")
    return "".join(parts)


def _transition_table(transitions: pd.DataFrame, names: dict[int, str]) -> pd.DataFrame:
    """Previous segment x current segment: "customers (share of the row)"."""
    matrix = transitions.copy()
    matrix["from_segment_id"] = matrix["from_segment_id"].map(
        lambda v: "new customers" if pd.isna(v) else f"was {int(v)}")
    matrix["to_segment_id"] = matrix["to_segment_id"].map(
        lambda v: "left (no longer segmented)" if pd.isna(v) else f"now {int(v)}: {names.get(int(v), '')}")
    counts = matrix.pivot_table(index="from_segment_id", columns="to_segment_id", values="customer_count",
                                aggfunc="sum", fill_value=0)
    shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)
    cells = counts.astype(int).map(lambda count: f"{count:,}") + " (" \
        + (shares * 100).round(0).fillna(0).astype(int).astype(str) + "%)"
    return cells.reset_index().rename(columns={"from_segment_id": ""})
