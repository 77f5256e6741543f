"""The report's figures: matplotlib (Agg) drawn to embedded PNGs, each with an `alt` text that
says what it shows. Each function takes the run's data and returns one `<img>` element; a
segment's colour comes from the caller's mapping (`palette.segment_color`), the same in every
figure and in the views' `segment_color`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from segmentation.dataset import Column  # noqa: E402
from segmentation import display  # noqa: E402
from segmentation.report.data import _present  # noqa: E402

if TYPE_CHECKING:
    from segmentation.report.data import ReportData, _Feature

MAX_CATEGORIES_SHOWN = 12  # bars per category chart; the rest are summed as "other"
PANELS_PER_ROW = 4
DATA_COLOUR = "#4c72b0"
#: Widest index the profile bars are drawn to: a category few customers have can reach 976 in the
#: segment that holds them, which would flatten every other bar. Longer bars are cut here,
#: hatched, and their true figure written beside them.
INDEX_AXIS_LIMIT = 300



def _count(value) -> str:
    return "–" if not _present(value) else f"{int(value):,}"



def _tick(value: float, _position=None) -> str:
    """An axis tick with thousands separators (12,000 rather than 12000 or 1.2e4)."""
    return f"{value:,.0f}" if abs(value) >= 1000 and value == round(value) else f"{value:,g}"


def _separators(axis, x: bool = True, y: bool = True) -> None:
    """Thousands separators on the linear axes of `axis` (log axes keep their powers of ten; an
    axis of named ticks, such as segment names, is left alone by passing False)."""
    if x and axis.get_xscale() == "linear":
        axis.xaxis.set_major_formatter(FuncFormatter(_tick))
    if y and axis.get_yscale() == "linear":
        axis.yaxis.set_major_formatter(FuncFormatter(_tick))


def _mpl(text: str) -> str:
    """Text for matplotlib: a "$" in a label or unit is a dollar, never the start of math."""
    return str(text).replace("$", r"\$")


def _png(figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{encoded}">'

def _grid(count: int, width: float = 4.0, height: float = 3.4, per_row: int = PANELS_PER_ROW):
    columns = min(count, per_row)
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
        _separators(axis)
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
        _separators(axis)
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
        _separators(axis)
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


def spread(data: ReportData, column: Column) -> float:
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


def plot_segments(data: ReportData, x: Column, y: Column, colours: dict[int, str], names: dict[int, str]) -> str:
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
    _separators(axis)
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


def plot_segment_sizes(profiles: pd.DataFrame, colours: dict[int, str]) -> str:
    figure, axis = plt.subplots(figsize=(11, 4.8))
    ids = profiles["segment_id"].astype(int).tolist()
    counts = profiles["customer_count"].fillna(0).astype(float).to_numpy()
    axis.bar(range(len(ids)), counts, color=[colours.get(segment_id, "grey") for segment_id in ids])
    axis.set_xticks(range(len(ids)))
    axis.set_xticklabels([_mpl(f"{row.segment_id}: {row.segment_name}") for row in profiles.itertuples()],
                         rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("Customers")
    axis.set_title("Segment sizes")
    _separators(axis, x=False)
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


def index_axis_limit(values) -> float:
    """Where the index axis ends: the largest index if it is at most INDEX_AXIS_LIMIT (at least
    the 100 line), else INDEX_AXIS_LIMIT, and longer bars are cut there."""
    known = [float(value) for value in values if value is not None and not math.isnan(float(value))]
    return min(max([100.0, *known]), float(INDEX_AXIS_LIMIT))


def index_figure(value: float) -> str:
    """An index as written beside its bar: three significant digits (`display.decimals`), no
    decimal from 100 up: 976, 45.3, 8.12."""
    return display.figure(value, display.decimals([value], at_least=0))


def plot_profile_indexes(data: ReportData, features: list[_Feature], colours: dict[int, str],
                         names: dict[int, str]) -> str:
    segment_ids = sorted(colours)
    panels = {segment_id: _index_bars(data, features, segment_id) for segment_id in segment_ids}
    limit = index_axis_limit(value for bars in panels.values() for _, value in bars)
    # three panels a row: the figure is shown about as wide as the page, so its labels keep their size
    figure_, axes = _grid(len(segment_ids), width=4.2, height=0.9 + 0.45 * max(len(features), 1), per_row=3)
    described = []
    cut = 0
    for axis, segment_id in zip(axes, segment_ids):
        bars = panels[segment_id]
        values = [value if value is not None else 0.0 for _, value in bars]
        drawn = [min(value, limit) for value in values]
        clipped = [value > limit for value in values]
        cut += sum(clipped)
        containers = axis.barh(range(len(bars)), drawn, color=colours[segment_id])
        for patch, is_cut in zip(containers, clipped):
            if is_cut:
                patch.set_hatch("///")
                patch.set_edgecolor("black")
        for position, ((_, value), length, is_cut) in enumerate(zip(bars, drawn, clipped)):
            text = "n/a" if value is None else index_figure(value) + (" ▸ cut" if is_cut else "")
            axis.text(length + limit * 0.02, position, text, va="center", fontsize=8,
                      fontweight="bold" if is_cut else "normal", zorder=4,
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85})
        axis.axvline(100, color="black", linewidth=1, linestyle="--")
        axis.set_yticks(range(len(bars)))
        axis.set_yticklabels([_mpl(label) for label, _ in bars], fontsize=8)
        axis.invert_yaxis()
        axis.set_xlim(0, limit * 1.3)  # room for the figures beside the bars
        axis.set_title(_mpl(_short(f"{segment_id}: {names.get(segment_id, '')}")), fontsize=9,
                       color=colours[segment_id])
        axis.set_xlabel("Index (overall average = 100)", fontsize=8)
        described.append(f"segment {segment_id} ({names.get(segment_id, '')}): " + ", ".join(
            f"{label} {index_figure(value)}" if value is not None else f"{label} n/a" for label, value in bars))
    title = "Segment profiles against the average (segment mean / overall mean × 100)"
    if cut:
        title += f"\nbars beyond {INDEX_AXIS_LIMIT} are cut (hatched), their true index written beside them"
    figure_.suptitle(title, fontsize=11)
    figure_.tight_layout()
    alt = ("Bar charts of profile indexes against the overall average, one panel per segment in its colour, "
           "one bar per clustering feature, dashed line at 100"
           + (f", bars beyond {INDEX_AXIS_LIMIT} cut and hatched with their true index written beside them"
              if cut else "") + ": " + "; ".join(described) + ".")
    return _png(figure_, alt)


def _short(title: str, length: int = 48) -> str:
    """A panel title that fits its panel: cut with an ellipsis (the full name is in the cards)."""
    return title if len(title) <= length else title[: length - 1] + "…"
