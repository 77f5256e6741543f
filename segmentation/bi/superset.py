"""A Superset import bundle of the BI views: one database, a dataset per view, charts, a dashboard.

The bundle is the zip layout and YAML (version 1.0.0) that `superset import-dashboards` and
the UI's dashboard import read: `<root>/metadata.yaml`, `databases/`, `datasets/<database>/`,
`charts/`, `dashboards/`. Views, columns and their comments are read from the database at
export time (`read_views`), so the datasets follow the declaration of the running job:
a dataset's description is its view's COMMENT, a column's description its column's COMMENT,
and its verbose name a readable title (declared labels and units where the column is one).

UUIDs are derived from the database's name and the object's name, so importing a newer
bundle of the same database updates the objects instead of adding copies. The database
entry carries Superset's password mask: the password is typed in Superset after import.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import re
import uuid
import zipfile
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from segmentation.dataset import Dataset
from segmentation.errors import SegmentationError
from segmentation.palette import segment_color

SCHEMA = "segmentation"
VERSION = "1.0.0"  # Superset's import/export format
PASSWORD_MASK = "XXXXXXXXXX"  # what Superset writes for a password in its own exports
# Superset refuses a masked password without a `password` field ("Must provide a password"),
# and `superset import-dashboards` cannot ask for one: the bundle carries this placeholder,
# replaced in Superset after the import (Settings > Database Connections > edit).
PASSWORD_PLACEHOLDER = "change-me"
DASHBOARD_TITLE = "Customer segments"
_NAMESPACE = uuid.UUID("5b0e7f3c-2d7e-4c55-9a55-7d1f3f0c2a11")
_TIME_TYPES = ("timestamp", "date")


@dataclasses.dataclass(frozen=True)
class ViewColumn:
    name: str
    type: str  # as PostgreSQL's format_type spells it: "bigint", "timestamp with time zone"
    comment: str | None


@dataclasses.dataclass(frozen=True)
class View:
    name: str
    comment: str | None
    columns: tuple[ViewColumn, ...]

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]


def read_views(connection: Connection, schema: str = SCHEMA) -> dict[str, View]:
    """Every view of `schema` with its comment and its columns (name, type, comment), by name."""
    views = connection.execute(
        sa.text(
            "select c.oid, c.relname, obj_description(c.oid, 'pg_class') as comment"
            " from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
            " where n.nspname = :schema and c.relkind in ('v', 'm') order by c.relname"
        ),
        {"schema": schema},
    ).all()
    found = {}
    for view in views:
        columns = connection.execute(
            sa.text(
                "select a.attname, format_type(a.atttypid, a.atttypmod) as type,"
                " col_description(a.attrelid, a.attnum) as comment"
                " from pg_catalog.pg_attribute as a"
                " where a.attrelid = :oid and a.attnum > 0 and not a.attisdropped order by a.attnum"
            ),
            {"oid": view.oid},
        ).all()
        found[view.relname] = View(view.relname, view.comment,
                                   tuple(ViewColumn(c.attname, c.type, c.comment) for c in columns))
    return found


def segment_labels(connection: Connection, views: dict[str, View]) -> dict[str, int]:
    """Each label a chart shows for a segment -> its segment id, so the dashboard can give every
    label its segment's colour (`palette.segment_color`, as in the report).

    Labels are segment names (and short labels) of every published run, and the run-prefixed
    labels of the transitions view, read from the views; the latest run wins a repeated name.
    """
    queries = {  # view -> (label column, id column): constant names only
        "segment_profile_history": [("segment_name", "segment_id"), ("segment_label", "segment_id")],
        "segment_transitions": [("from_label", "from_segment_id"), ("to_label", "to_segment_id")],
        "segment_transitions_history": [("from_label", "from_segment_id"), ("to_label", "to_segment_id")],
    }
    labels: dict[str, int] = {}
    for view_name, pairs in queries.items():
        view = views.get(view_name)
        for label, segment_id in pairs:
            if view is None or not {label, segment_id} <= set(view.column_names):
                continue
            order = " order by run_id" if "run_id" in view.column_names else ""
            rows = connection.execute(sa.text(
                f"select {label} as label, {segment_id} as segment_id from {SCHEMA}.{view_name}"
                f" where {segment_id} is not null{order}"
            )).all()
            labels.update({str(row.label): int(row.segment_id) for row in rows if row.label is not None})
    return labels


# --- readable column titles ------------------------------------------------------------------

_TITLES = {
    "customer_id": "Customer id", "segment_id": "Segment id", "segment_name": "Segment",
    "segment_label": "Segment (short)", "segment_order": "Segment order", "segment_color": "Segment colour",
    "customer_count": "Customers", "customer_share": "Share of customers (0-1)",
    "customer_share_pct": "Share of customers (%)", "published_date": "Published on",
    "n_customers": "Customers", "k": "Segments (k)", "silhouette": "Silhouette (-1 to 1, higher = clearer)",
    "size_psi": "Segment size drift (PSI)", "max_centroid_shift": "Largest centre shift",
    "n_outliers": "Outliers", "is_outlier": "Outlier", "distance_to_centroid": "Distance to segment centre",
    "margin_to_second": "Margin to second-nearest segment", "second_segment_id": "Second-nearest segment id",
    "recommendation": "Recommendation", "distinguishing_features": "What sets it apart",
    "previous_customer_count": "Customers in the previous run", "centroid_shift": "Centre shift",
    "index": "Index (100 = average)", "mean": "Mean (share for a category)",
    "run_id": "Run", "from_run_id": "From run", "to_run_id": "To run",
    "share_of_from_segment": "Share of the previous segment (0-1)",
    "share_of_from_segment_pct": "Share of the previous segment (%)",
    "from_label": "From (run: segment)", "to_label": "To (run: segment)",
}


def column_title(name: str, dataset: Dataset) -> str:
    """A readable title for view column `name`: declared labels and units where it is a declared
    column or a statistic of one (avg_, median_), a fixed title for the job's own columns, else
    the name in words."""
    declared = {column.name: column for column in dataset.columns}
    for prefix, word in (("avg_", "Average "), ("median_", "Median ")):
        if name.startswith(prefix) and name[len(prefix):] in declared:
            return word + declared[name[len(prefix):]].axis_label
    if name in declared:
        label = declared[name].axis_label
        return label[:1].upper() + label[1:]
    if name in _TITLES:
        return _TITLES[name]
    words = name.replace("_", " ").replace(" pct", " (%)").replace("avg ", "average ")
    return words[:1].upper() + words[1:]


# --- the bundle's objects --------------------------------------------------------------------


def _uuid(database: str, kind: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{database}/{kind}/{name}"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def database_name(url: sa.URL) -> str:
    """The Superset name of the database entry; Superset names must be unique, so it names the database."""
    return f"Customer segments ({url.database or 'postgres'})"


def database_config(url: sa.URL, user: str, database_uuid: str) -> dict[str, Any]:
    """Superset's database entry: the job's host, port and database, `user`, a placeholder password."""
    uri = sa.URL.create("postgresql+psycopg2", user, PASSWORD_MASK, url.host or "DBHOST", url.port or 5432,
                        url.database)
    return {
        "database_name": database_name(url), "sqlalchemy_uri": uri.render_as_string(hide_password=False),
        "password": PASSWORD_PLACEHOLDER,
        "cache_timeout": None, "expose_in_sqllab": True, "allow_run_async": False, "allow_ctas": False,
        "allow_cvas": False, "allow_dml": False, "allow_csv_upload": False, "extra": {},
        "uuid": database_uuid, "version": VERSION,
    }


def dataset_config(view: View, dataset: Dataset, database: str, database_uuid: str) -> dict[str, Any]:
    """One dataset of `view`: its comment as description, each column titled and described."""
    columns = [{
        "column_name": column.name, "verbose_name": column_title(column.name, dataset),
        "description": column.comment, "type": column.type.upper(),
        "is_dttm": column.type.startswith(_TIME_TYPES), "is_active": True, "groupby": True, "filterable": True,
        "expression": None, "python_date_format": None, "advanced_data_type": None, "extra": {},
    } for column in view.columns]
    times = [column.name for column in view.columns if column.type.startswith(_TIME_TYPES)]
    return {
        "table_name": view.name, "schema": SCHEMA, "description": view.comment,
        "main_dttm_col": "published_at" if "published_at" in times else (times[0] if times else None),
        "default_endpoint": None, "offset": 0, "cache_timeout": None, "sql": None, "params": None,
        "template_params": None, "filter_select_enabled": True, "fetch_values_predicate": None, "extra": None,
        "uuid": _uuid(database, "dataset", view.name),
        "metrics": [{"metric_name": "count", "verbose_name": "Rows", "metric_type": "count",
                     "expression": "COUNT(*)", "description": None, "d3format": None, "extra": None,
                     "warning_text": None}],
        "columns": columns, "version": VERSION, "database_uuid": database_uuid,
    }


# --- charts ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Chart:
    """A chart of the dashboard: its view, Superset's viz type and form data, the view columns it reads."""

    title: str
    view: str
    viz_type: str
    params: dict[str, Any]
    columns: tuple[str, ...]
    description: str
    width: int = 6  # of the dashboard grid's 12 columns


def _metric(column: str, aggregate: str, label: str) -> dict[str, Any]:
    return {"expressionType": "SIMPLE", "column": {"column_name": column}, "aggregate": aggregate,
            "label": label, "hasCustomLabel": True, "optionName": f"metric_{column}_{aggregate.lower()}"}


def _segment_column(view: View) -> str:
    """The short label once the view has one (long names are dropped from axes), else the name."""
    return "segment_label" if "segment_label" in view.column_names else "segment_name"


def _percent_columns(view: View) -> list[str]:
    return [name for name in view.column_names if name.endswith(("_pct", "_percent"))]


def _timeseries(x_axis: str, metrics: list, groupby: list[str], viz_type: str, x_title: str,
                y_title: str, y_format: str = "SMART_NUMBER") -> dict[str, Any]:
    return {
        "x_axis": x_axis, "metrics": metrics, "groupby": groupby, "adhoc_filters": [], "row_limit": 10000,
        "x_axis_sort_asc": True, "show_legend": True, "legendType": "scroll", "legendOrientation": "top",
        "x_axis_title": x_title, "x_axis_title_margin": 30, "y_axis_title": y_title, "y_axis_title_margin": 40,
        "y_axis_title_position": "Left", "y_axis_format": y_format, "rich_tooltip": True, "markerEnabled": True,
        "xAxisForceCategorical": True,  # runs are steps, not a continuous 1.2, 1.4, ... axis
        "color_scheme": "supersetColors", "viz_type": viz_type,
    }


def _number_formats(view: View, shown: list[str]) -> dict[str, dict[str, str]]:
    """Table cells as people read them: shares as percentages, averages to one decimal."""
    formats = {}
    for column in view.columns:
        if column.name not in shown or not column.type.startswith(("numeric", "double", "real")):
            continue
        formats[column.name] = {"d3NumberFormat": ".1%" if column.name.endswith("_share") else ",.1f"}
    return formats


def plan_charts(views: dict[str, View]) -> list[Chart]:
    """The dashboard's charts, for the views that exist: segment sizes, profile table, feature
    indexes, sizes over time, transitions Sankey, run quality."""
    charts = []
    profiles = views.get("current_segment_profiles")
    if profiles is not None:
        segment = _segment_column(profiles)
        charts.append(Chart(
            "Segment sizes", profiles.name, "pie",
            {"groupby": [segment], "metric": _metric("customer_count", "SUM", "Customers"), "adhoc_filters": [],
             "row_limit": 100, "sort_by_metric": True, "show_labels": True, "label_type": "key_percent",
             "labels_outside": True, "show_legend": False, "innerRadius": 30, "outerRadius": 70,
             "number_format": "SMART_NUMBER", "color_scheme": "supersetColors", "viz_type": "pie"},
            (segment, "customer_count"), "Customers per segment of the latest published run."))
    features = views.get("current_segment_features")
    if features is not None:
        segment = _segment_column(features)
        charts.append(Chart(
            "Feature indexes (100 = average customer)", features.name, "echarts_timeseries_bar",
            {**_timeseries("label", [_metric("index", "MAX", "Index")], [segment], "echarts_timeseries_bar",
                           "Feature", "Index (100 = average)"),
             "adhoc_filters": [{"expressionType": "SQL", "clause": "WHERE", "sqlExpression": "category IS NULL"}]},
            ("label", "index", segment, "category"),
            "Each segment's mean of every numeric feature against all customers' mean (= 100)."))
    if profiles is not None:  # full width, under the two small charts
        shown = ["segment_id", "segment_name", "customer_count", *(_percent_columns(profiles) or ["customer_share"])]
        shown += [name for name in profiles.column_names if name.startswith("avg_")] + ["recommendation"]
        shown = [name for name in dict.fromkeys(shown) if name in profiles.column_names]
        charts.append(Chart(
            "Segment profiles", profiles.name, "table",
            {"query_mode": "raw", "all_columns": shown, "order_by_cols": [], "groupby": [], "adhoc_filters": [],
             "row_limit": 1000, "server_page_length": 20, "show_cell_bars": False, "viz_type": "table",
             "column_config": _number_formats(profiles, shown)},
            tuple(shown), "One row per segment: size, averages and the recommended action.", width=12))
    history = views.get("segment_profile_history")
    if history is not None:
        segment = _segment_column(history)
        charts.append(Chart(
            "Segment sizes over runs", history.name, "echarts_timeseries_line",
            _timeseries("run_id", [_metric("customer_count", "SUM", "Customers")], [segment],
                        "echarts_timeseries_line", "Run", "Customers"),
            ("run_id", "customer_count", segment), "Customers per segment in every published run."))
    runs = views.get("run_history")
    if runs is not None:
        charts.append(Chart(
            "Run quality", runs.name, "echarts_timeseries_line",
            _timeseries("run_id", [_metric("silhouette", "MAX", "Silhouette"),
                                   _metric("size_psi", "MAX", "Size drift (PSI)")], [],
                        "echarts_timeseries_line", "Run", "Score", "~g"),
            ("run_id", "silhouette", "size_psi"),
            "Silhouette (higher = clearer segments; below 0.25 a run is held) and segment size drift "
            "(PSI; above 0.25 a run is held) of every run."))
    transitions = views.get("segment_transitions_history") or views.get("segment_transitions")
    if transitions is not None:
        charts.append(Chart(
            "Customers moving between segments", transitions.name, "sankey_v2",
            {"source": "from_label", "target": "to_label", "metric": _metric("customer_count", "SUM", "Customers"),
             "adhoc_filters": [], "row_limit": 10000, "color_scheme": "supersetColors", "viz_type": "sankey_v2"},
            ("from_label", "to_label", "customer_count"),
            "Where the customers of each segment went between published runs.", width=12))
    return charts


def chart_config(chart: Chart, database: str, datasets: dict[str, dict]) -> dict[str, Any]:
    dataset_uuid = datasets[chart.view]["uuid"]
    return {
        "slice_name": chart.title, "description": chart.description, "certified_by": None,
        "certification_details": None, "viz_type": chart.viz_type,
        "params": {**chart.params, "datasource": f"{chart.view}__table", "extra_form_data": {},
                   "annotation_layers": [], "dashboards": []},
        "query_context": None, "cache_timeout": None, "uuid": _uuid(database, "chart", chart.title),
        "version": VERSION, "dataset_uuid": dataset_uuid,
    }


def dashboard_config(charts: list[dict], widths: list[int], database: str,
                     label_colors: dict[str, str]) -> dict[str, Any]:
    """One dashboard: a header and the charts in rows of up to 12 grid columns."""
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": DASHBOARD_TITLE}},
    }
    row, used = None, 12
    for number, (chart, width) in enumerate(zip(charts, widths), start=1):
        if used + width > 12:
            row, used = f"ROW-{number}", 0
            position["GRID_ID"]["children"].append(row)
            position[row] = {"type": "ROW", "id": row, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                             "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        used += width
        key = f"CHART-{number}"
        position[row]["children"].append(key)
        position[key] = {"type": "CHART", "id": key, "children": [], "parents": ["ROOT_ID", "GRID_ID", row],
                         "meta": {"uuid": chart["uuid"], "sliceName": chart["slice_name"], "width": width,
                                  "height": 60, "chartId": number}}
    return {
        "dashboard_title": DASHBOARD_TITLE, "description": None, "css": "", "slug": None,
        "certified_by": None, "certification_details": None, "published": True,
        "uuid": _uuid(database, "dashboard", DASHBOARD_TITLE), "position": position,
        "metadata": {"color_scheme": "supersetColors", "label_colors": label_colors, "shared_label_colors": [],
                     "color_scheme_domain": [], "map_label_colors": {}, "refresh_frequency": 0,
                     "expanded_slices": {}, "timed_refresh_immune_slices": [], "cross_filters_enabled": True,
                     "native_filter_configuration": [], "default_filters": "{}", "chart_configuration": {},
                     "global_chart_configuration": {}},
        "version": VERSION,
    }


def bundle_files(connection: Connection, url: sa.URL, dataset: Dataset, user: str = "superset") -> dict[str, str]:
    """The bundle's files (path inside the zip -> YAML text) for the database `connection` reads.

    `url` gives the database entry's host, port and database name; `user` its login role (make
    it a reader with `segment db grant-reader`); the password is Superset's mask. `dataset` is
    the job's declaration, for readable column titles.
    """
    views = read_views(connection)
    database = url.database or "postgres"
    database_uuid = _uuid(database, "database", url.render_as_string(hide_password=True))
    root = f"segmentation_dashboard_{_slug(database)}"
    database_file = f"databases/{_slug(database_name(url))}.yaml"
    files = {database_file: database_config(url, user, database_uuid)}
    datasets = {name: dataset_config(view, dataset, database, database_uuid) for name, view in views.items()}
    for name, config in datasets.items():
        files[f"datasets/{_slug(database_name(url))}/{name}.yaml"] = config
    plans = plan_charts(views)
    charts = [chart_config(plan, database, datasets) for plan in plans]
    for plan, chart in zip(plans, charts):
        files[f"charts/{_slug(plan.title)}.yaml"] = chart
    label_colors = {label: segment_color(segment_id) for label, segment_id in segment_labels(connection, views).items()}
    files[f"dashboards/{_slug(DASHBOARD_TITLE)}.yaml"] = dashboard_config(
        charts, [plan.width for plan in plans], database, label_colors)
    files = {"metadata.yaml": {"version": VERSION, "type": "Dashboard",
                               "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat()}, **files}
    return {f"{root}/{path}": yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
            for path, content in files.items()}


def write_bundle(connection: Connection, url: sa.URL, dataset: Dataset, out, user: str = "superset") -> int:
    """Write the bundle of `bundle_files` as a zip to `out` (a path or a binary file); return the
    number of charts."""
    files = bundle_files(connection, url, dataset, user)
    charts = sum(1 for path in files if "/charts/" in path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path, text in files.items():
            bundle.writestr(path, text)
    if hasattr(out, "write"):
        out.write(buffer.getvalue())
        return charts
    try:
        with open(out, "wb") as file:
            file.write(buffer.getvalue())
    except OSError as error:
        raise SegmentationError(f"cannot write the bundle to {out}: {error.strerror}") from None
    return charts
