"""One self-contained HTML report per run, for the marketer who acts on the segments.

Sections: summary, the data (a histogram per numeric declared column, the shares of each
category and boolean column, pairwise scatters of the numeric clustering features), the
choice of k (every criterion with the chosen k marked), the segments (scatter with centres,
profile indexes against the average), the profile table with names and recommendations,
and what changed since the previous published run. Images are embedded PNGs (matplotlib,
Agg), each with an `alt` text that says what it shows.

Nothing here names a column of any particular data set: the run's declaration (the
`dataset` column of `runs`, `Dataset.describe()`; NULL before migration 0004 means `MALL`)
says which columns there are, their labels, units, types and transforms. Per-customer
values come from `customer_segments.attributes` (text, in declaration order) and segment
statistics from `segment_features` (long format). Each segment keeps one colour throughout.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402

from segmentation.dataset import BOOLEAN_WORDS, Column, Dataset, from_description  # noqa: E402
from segmentation.errors import SegmentationError  # noqa: E402

SAMPLE_ROWS = 20_000
MAX_PAIRS = 3
MAX_CATEGORIES_SHOWN = 12  # bars per category chart; the rest are summed as "other"
PANELS_PER_ROW = 4
DATA_COLOUR = "#4c72b0"
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
    previous_run_id = connection.execute(
        sa.text(
            "select run_id from segmentation_internal.runs where status = 'published' and run_id < :r"
            " order by published_at desc, run_id desc limit 1"
        ),
        {"r": run_id},
    ).scalar()
    transitions = pd.DataFrame(columns=["from_segment_id", "to_segment_id", "customer_count"])
    if previous_run_id is not None:
        transitions = read(
            """
            with earlier as (
                select customer_id, segment_id from segmentation_internal.customer_segments where run_id = :p
            ),
            latest as (
                select customer_id, segment_id from segmentation_internal.customer_segments where run_id = :r
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
    return ReportData(run, evaluations, profiles, customers, previous_run_id, transitions, segment_features, dataset)


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


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA


# --- rendering ----------------------------------------------------------------------------


def _mpl(text: str) -> str:
    """Text for matplotlib: a "$" in a label or unit is a dollar, never the start of math."""
    return str(text).replace("$", r"\$")


def _png(figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{encoded}">'


def _colours(segment_ids) -> dict[int, tuple]:
    """One colour per segment, by position among the run's sorted segment ids."""
    ordered = sorted({int(segment_id) for segment_id in segment_ids})
    if len(ordered) <= 10:
        palette = [plt.get_cmap("tab10")(index) for index in range(10)]
    elif len(ordered) <= 20:
        palette = [plt.get_cmap("tab20")(index) for index in range(20)]
    else:
        palette = [plt.get_cmap("nipy_spectral")(value) for value in np.linspace(0.05, 0.95, len(ordered))]
    return {segment_id: palette[index] for index, segment_id in enumerate(ordered)}


def _grid(count: int, width: float = 4.0, height: float = 3.4):
    columns = min(count, PANELS_PER_ROW)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:count])


def _log_bins(values: pd.Series, bins: int = 20):
    low, high = float(values.min()), float(values.max())
    return np.geomspace(low, high, bins + 1) if high > low else bins


def plot_histograms(customers: pd.DataFrame, columns: list[Column]) -> str:
    figure, axes = _grid(len(columns))
    described = []
    for axis, column in zip(axes, columns):
        values = customers[column.name].dropna().astype(float) if column.name in customers else pd.Series(dtype=float)
        title = f"{column.label} distribution"
        if column.transform == "log":
            positive = values[values > 0]
            zeros = len(values) - len(positive)
            if len(positive):
                axis.hist(positive, bins=_log_bins(positive), color=DATA_COLOUR, edgecolor="white")
            axis.set_xscale("log")
            note = f", {zeros:,} zero values not shown" if zeros else ""
            described.append(f"{column.axis_label} (log scale{note})")
            if zeros:
                title += f"\n({zeros:,} zero values not shown)"
        else:
            if len(values):
                axis.hist(values, bins=20, color=DATA_COLOUR, edgecolor="white")
            described.append(column.axis_label)
        axis.set_xlabel(_mpl(column.axis_label + (", log scale" if column.transform == "log" else "")))
        axis.set_ylabel("Customers")
        axis.set_title(_mpl(title), fontsize=10)
    figure.tight_layout()
    alt = (f"Histograms of the numeric columns over {len(customers):,} customers, one panel each: "
           + "; ".join(described) + ".")
    return _png(figure, alt)


def _shares(values: pd.Series, column: Column) -> pd.Series:
    if column.type == "boolean":
        text = values.map(lambda v: "unknown" if v is None or (isinstance(v, float) and math.isnan(v))
                          else ("yes" if bool(v) else "no"))
        order = [value for value in ("yes", "no", "unknown") if value in set(text)]
        return text.value_counts(normalize=True).reindex(order)
    text = values.map(lambda v: "unknown" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    shares = text.value_counts(normalize=True)
    if column.values:
        declared = [value for value in column.values if value in shares.index]
        shares = shares.reindex(declared + [value for value in shares.index if value not in declared])
    if len(shares) > MAX_CATEGORIES_SHOWN:
        top = shares.sort_values(ascending=False).iloc[: MAX_CATEGORIES_SHOWN - 1]
        shares = pd.concat([top, pd.Series({"other": 1.0 - top.sum()})])
    return shares


def plot_category_shares(customers: pd.DataFrame, columns: list[Column]) -> str:
    figure, axes = _grid(len(columns))
    described = []
    for axis, column in zip(axes, columns):
        values = customers[column.name] if column.name in customers else pd.Series(dtype=object)
        shares = _shares(values, column) if len(values) else pd.Series(dtype=float)
        names = [str(name) for name in shares.index]
        axis.barh(range(len(shares)), shares.to_numpy() * 100, color=DATA_COLOUR)
        axis.set_yticks(range(len(shares)))
        axis.set_yticklabels([_mpl(name) for name in names], fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel("Share of customers (%)")
        axis.set_title(_mpl(f"{column.label}" + (" (yes / no)" if column.type == "boolean" else " split")),
                       fontsize=10)
        described.append(f"{column.label}: " + ", ".join(
            f"{name} {share * 100:.0f}%" for name, share in zip(names, shares.to_numpy())))
    figure.tight_layout()
    alt = "Bar charts of the share of customers in each category, one panel per column: " + "; ".join(described) + "."
    return _png(figure, alt)


def plot_pairs(customers: pd.DataFrame, pairs: list[tuple[Column, Column]]) -> str:
    figure, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    for axis, (x, y) in zip(axes.flat, pairs):
        axis.scatter(customers[x.name], customers[y.name], s=10, alpha=0.5, color=DATA_COLOUR)
        _log_axes(axis, x, y)
        axis.set_xlabel(_mpl(x.axis_label))
        axis.set_ylabel(_mpl(y.axis_label))
        axis.set_title(_mpl(f"{y.label} against {x.label}"), fontsize=10)
    figure.tight_layout()
    alt = (f"Scatter plots of {len(customers):,} customers for pairs of clustering features: "
           + "; ".join(f"{y.axis_label} against {x.axis_label}" for x, y in pairs) + ".")
    return _png(figure, alt)


def _log_axes(axis, x: Column, y: Column) -> None:
    # log(1 + x) features may hold zeros: symlog keeps them visible, logarithmic above 1
    if x.transform == "log":
        axis.set_xscale("symlog", linthresh=1)
    if y.transform == "log":
        axis.set_yscale("symlog", linthresh=1)


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
        values = evaluations[["k", column]].dropna() if column in evaluations else pd.DataFrame(columns=["k", column])
        if column == "gap" and values.size and "gap_sd" in evaluations:
            axis.errorbar(values["k"], values[column], yerr=evaluations.loc[values.index, "gap_sd"], marker="o",
                          capsize=3, label=label.split(" (")[0])
        else:
            axis.plot(values["k"], values[column], marker="o", label=label.split(" (")[0])
        axis.axvline(chosen, color="#c44e52", linestyle="--", label=f"chosen k = {chosen}")
        if column == "inertia" and "is_elbow" in evaluations and evaluations["is_elbow"].fillna(False).astype(bool).any():
            elbow = evaluations.loc[evaluations["is_elbow"].fillna(False).astype(bool)].iloc[0]
            axis.scatter([elbow["k"]], [elbow["inertia"]], s=120, facecolors="none", edgecolors="black",
                         label=f"elbow (k = {int(elbow['k'])})", zorder=3)
        axis.set_xlabel("Number of segments k")
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.legend(fontsize=8)
    figure.tight_layout()
    ks = evaluations["k"].dropna().astype(int) if "k" in evaluations else pd.Series(dtype=int)
    tried = f"k = {ks.min()} to {ks.max()}" if len(ks) else "no k"
    alt = (f"Six line charts of the model-selection criteria for {tried} (inertia with the elbow circled, "
           f"silhouette, Davies-Bouldin, Calinski-Harabasz, gap statistic with error bars, bootstrap "
           f"stability); a dashed line marks the chosen k = {chosen}.")
    return _png(figure, alt)


def _numeric_rows(segment_features: pd.DataFrame, name: str) -> pd.DataFrame:
    if not len(segment_features):
        return segment_features
    return segment_features[(segment_features["feature"] == name) & segment_features["category"].isna()]


def _spread(data: ReportData, column: Column) -> float:
    """How far apart the segment means of `column` lie, in standard deviations."""
    rows = _numeric_rows(data.segment_features, column.name)
    z = pd.to_numeric(rows["z_score"], errors="coerce").dropna() if len(rows) else pd.Series(dtype=float)
    if len(z):
        return float(z.max() - z.min())
    means = pd.to_numeric(rows["mean"], errors="coerce").dropna() if len(rows) else pd.Series(dtype=float)
    values = data.customers[column.name].dropna() if column.name in data.customers else pd.Series(dtype=float)
    if len(means) and len(values) > 1 and values.std() > 0:
        return float((means.max() - means.min()) / values.std())
    index = pd.to_numeric(rows["index_value"], errors="coerce").dropna() if len(rows) else pd.Series(dtype=float)
    return float(index.max() - index.min()) / 100 if len(index) else 0.0


def plot_segments(data: ReportData, x: Column, y: Column, colours: dict[int, tuple], names: dict[int, str]) -> str:
    customers = data.customers
    if not len(customers):
        customers = pd.DataFrame(columns=["segment_id", "is_outlier", x.name, y.name])
    figure, axis = plt.subplots(figsize=(11, 6.5))
    for segment_id, members in customers.groupby("segment_id"):
        segment_id = int(segment_id)
        axis.scatter(members[x.name], members[y.name], s=14, alpha=0.6, color=colours.get(segment_id, "grey"),
                     label=_mpl(f"{segment_id}: {names.get(segment_id, '')}"))
    centres = _centres(data.segment_features, x.name, y.name)
    if len(centres):
        axis.scatter(centres["x"], centres["y"], marker="X", s=240, linewidths=1.5, edgecolors="black",
                     color=[colours.get(int(segment_id), "grey") for segment_id in centres.index],
                     label="segment centre (mean)", zorder=3)
    outliers = customers[customers["is_outlier"].fillna(False).astype(bool)] if len(customers) else customers
    if len(outliers):
        axis.scatter(outliers[x.name], outliers[y.name], s=40, facecolors="none", edgecolors="red", label="outlier")
    _log_axes(axis, x, y)
    axis.set_xlabel(_mpl(x.axis_label))
    axis.set_ylabel(_mpl(y.axis_label))
    axis.set_title("Customers by segment")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="Segment")
    figure.tight_layout()
    alt = (f"Scatter plot of {len(customers):,} customers by {x.axis_label} (x) and {y.axis_label} (y), "
           f"the two clustering features whose segment means differ most, coloured by segment "
           f"({len(colours)} segments); a cross in the segment's colour marks each segment centre"
           + (f"; {len(outliers):,} outliers circled in red" if len(outliers) else "") + ".")
    return _png(figure, alt)


def _centres(segment_features: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    frames = {}
    for axis_name, feature in (("x", x), ("y", y)):
        rows = _numeric_rows(segment_features, feature)
        frames[axis_name] = pd.Series(pd.to_numeric(rows["mean"], errors="coerce").to_numpy(),
                                      index=rows["segment_id"].astype(int).to_numpy()) if len(rows) else pd.Series()
    return pd.DataFrame(frames).dropna()


def plot_segment_sizes(profiles: pd.DataFrame, colours: dict[int, tuple]) -> str:
    figure, axis = plt.subplots(figsize=(11, 4.8))
    ids = profiles["segment_id"].astype(int).tolist()
    counts = profiles["customer_count"].fillna(0).astype(float).to_numpy()
    axis.bar(range(len(ids)), counts, color=[colours.get(segment_id, "grey") for segment_id in ids])
    axis.set_xticks(range(len(ids)))
    axis.set_xticklabels([_mpl(f"{row.segment_id}: {row.segment_name}") for row in profiles.itertuples()],
                         rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("Customers")
    axis.set_title("Segment sizes")
    figure.tight_layout()
    alt = ("Bar chart of segment sizes, one bar per segment in its colour: "
           + "; ".join(f"segment {row.segment_id} ({row.segment_name}) {_count(row.customer_count)} customers"
                       for row in profiles.itertuples()) + ".")
    return _png(figure, alt)


def _index_bars(data: ReportData, features: list[_Feature], segment_id: int) -> list[tuple[str, float | None]]:
    """(bar label, index) per clustering feature for one segment.

    Numbers: the index of the mean. Categories and booleans: the index of the category
    whose share sets the segment apart most (largest |z|, else largest |index - 100|).
    """
    frame = data.segment_features
    bars = []
    for feature in features:
        rows = frame[(frame["segment_id"].astype(int) == segment_id) & (frame["feature"] == feature.name)]
        if feature.kind == "numeric":
            rows = rows[rows["category"].isna()]
            value = pd.to_numeric(rows["index_value"], errors="coerce").dropna()
            bars.append((feature.label, float(value.iloc[0]) if len(value) else None))
            continue
        rows = rows.assign(
            z=pd.to_numeric(rows["z_score"], errors="coerce").abs(),
            i=pd.to_numeric(rows["index_value"], errors="coerce"),
        ).dropna(subset=["i"])
        if not len(rows):
            bars.append((feature.label, None))
            continue
        key = rows["z"] if rows["z"].notna().any() else (rows["i"] - 100).abs()
        best = rows.loc[key.fillna(-1).idxmax()]
        category = "yes" if feature.kind == "boolean" and str(best["category"]).lower() == "true" else best["category"]
        bars.append((f"{feature.label}: {category}", float(best["i"])))
    return bars


def plot_profile_indexes(data: ReportData, features: list[_Feature], colours: dict[int, tuple],
                         names: dict[int, str]) -> str:
    segment_ids = sorted(colours)
    figure, axes = _grid(len(segment_ids), width=4.2, height=0.9 + 0.45 * max(len(features), 1))
    largest = 100.0
    described = []
    for axis, segment_id in zip(axes, segment_ids):
        bars = _index_bars(data, features, segment_id)
        values = [value if value is not None else 0.0 for _, value in bars]
        largest = max([largest, *values])
        axis.barh(range(len(bars)), values, color=colours[segment_id])
        for position, (_, value) in enumerate(bars):
            if value is None:
                axis.text(2, position, "n/a", va="center", fontsize=7)
        axis.axvline(100, color="black", linewidth=1, linestyle="--")
        axis.set_yticks(range(len(bars)))
        axis.set_yticklabels([_mpl(label) for label, _ in bars], fontsize=8)
        axis.invert_yaxis()
        axis.set_title(_mpl(f"{segment_id}: {names.get(segment_id, '')}"), fontsize=9, color=colours[segment_id])
        axis.set_xlabel("Index (overall average = 100)", fontsize=8)
        described.append(f"segment {segment_id} ({names.get(segment_id, '')}): " + ", ".join(
            f"{label} {value:.0f}" if value is not None else f"{label} n/a" for label, value in bars))
    for axis in axes:
        axis.set_xlim(0, largest * 1.08)
    figure.suptitle("Segment profiles against the average (segment mean / overall mean × 100)", fontsize=11)
    figure.tight_layout()
    alt = ("Bar charts of profile indexes against the overall average, one panel per segment in its colour, "
           "one bar per clustering feature, dashed line at 100: " + "; ".join(described) + ".")
    return _png(figure, alt)


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _percent(value) -> str:
    return "–" if not _present(value) else f"{float(value) * 100:.1f}%"


def _count(value) -> str:
    return "–" if not _present(value) else f"{int(value):,}"


def _profile_table(data: ReportData, declared: list[_Feature]) -> pd.DataFrame:
    """id, name, customers, share, a mean per numeric feature, the shares of each category feature, ..."""
    profiles = data.profiles
    frame = data.segment_features
    table = pd.DataFrame({
        "id": profiles["segment_id"].astype(int).to_numpy(),
        "name": profiles["segment_name"].to_numpy(),
        "customers": [_count(value) for value in profiles["customer_count"]],
        "share": [_percent(value) for value in profiles["customer_share"]],
    })
    for feature in declared:
        rows = frame[frame["feature"] == feature.name] if len(frame) else frame
        if not len(rows):
            continue
        cells = []
        for segment_id in table["id"]:
            own = rows[rows["segment_id"].astype(int) == segment_id]
            if feature.kind == "numeric":
                mean = pd.to_numeric(own[own["category"].isna()]["mean"], errors="coerce").dropna()
                cells.append(_cell(float(mean.iloc[0])) if len(mean) else "–")
            elif feature.kind == "boolean":
                share = pd.to_numeric(own[own["category"].astype(str).str.lower() == "true"]["mean"], errors="coerce")
                cells.append(_percent(share.iloc[0]) if len(share.dropna()) else "–")
            else:
                own = own.sort_values("position")
                cells.append(", ".join(f"{row.category} {_percent(row.mean)}" for row in own.itertuples()) or "–")
        header = {"numeric": f"mean {feature.label}", "boolean": f"{feature.label}: share yes"}.get(
            feature.kind, f"{feature.label}: shares")
        table[header] = cells
    table["what sets it apart"] = profiles["distinguishing_features"].to_numpy() \
        if "distinguishing_features" in profiles else None
    table["recommendation"] = profiles["recommendation"].to_numpy() if "recommendation" in profiles else None
    return table


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

    sections = {
        "Summary": _summary_html(data, clustering),
        "The data": _data_html(data, clustering),
        "Choosing the number of segments": plot_k_choice(data.evaluations, chosen) + _table(
            data.evaluations[[c for c in ("k", "inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "gap",
                                          "gap_sd", "stability_ari", "votes", "is_chosen") if c in data.evaluations]]
        ),
        "The segments": _segments_html(data, clustering, colours, names),
        "Segment profiles": _table(_profile_table(data, declared)),
        "What changed since the last run": _changes_html(data),
    }
    body = "".join(
        f"<section id='section-{index}'><h2>{html.escape(title)}</h2>{content}</section>"
        for index, (title, content) in enumerate(sections.items(), start=1)
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
</style></head>
<body><h1>Customer segments – run {html.escape(str(run.run_id))}</h1>{body}</body></html>
"""


def _summary_html(data: ReportData, clustering: list[_Feature]) -> str:
    run, dataset = data.run, data.dataset
    labels = {column.name: column.label for column in dataset.columns}
    imputed = ", ".join(
        f"{count} {labels.get(name, name)}" for name, count in (getattr(run, "n_imputed", None) or {}).items() if count
    ) or "none"
    error = getattr(run, "error", None)
    summary = [
        ("Run", run.run_id),
        ("Status", f"{run.status}" + (f" ({error})" if error else "")),
        ("Published at", getattr(run, "published_at", None) or "not published"),
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
        ("Silhouette", _cell(getattr(run, "silhouette", None))),
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


def _data_html(data: ReportData, clustering: list[_Feature]) -> str:
    customers, dataset = data.customers, data.dataset
    if not len(customers):
        return _sample_note(data)
    numeric = [column for column in dataset.columns if column.is_numeric]
    categorical = [column for column in dataset.columns if not column.is_numeric]
    parts = []
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


def _segments_html(data: ReportData, clustering: list[_Feature], colours: dict[int, tuple],
                   names: dict[int, str]) -> str:
    dataset = data.dataset
    numeric = [dataset.column(f.name) for f in clustering if f.kind == "numeric" and f.name in dataset.names]
    parts = []
    if len(numeric) >= 2:
        # stable sort: ties keep declaration order
        x, y = sorted(numeric, key=lambda column: -_spread(data, column))[:2]
        parts.append(plot_segments(data, x, y, colours, names))
    else:
        parts.append(plot_segment_sizes(data.profiles, colours))
    if clustering and len(data.segment_features) and colours:
        parts.append(plot_profile_indexes(data, clustering, colours, names))
    else:
        parts.append("<p class='note'>This run has no per-feature segment statistics to compare.</p>")
    return "".join(parts)


def _sample_note(data: ReportData) -> str:
    shown, total = len(data.customers), getattr(data.run, "n_customers", None) or 0
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
        f"{_cell(getattr(run, 'size_psi', None))} (below 0.1 stable, above 0.25 a large shift); largest centre shift "
        f"{_cell(getattr(run, 'max_centroid_shift', None))}.</p>"
        + _table(drift)
        + "<h3>Customers moved between segments</h3>"
        + _table(pivot)
    )
