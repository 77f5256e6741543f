"""The Superset bundle, parsed: every chart reads a dataset of the bundle and columns its view has."""

import graphlib
import io
import zipfile

import pytest
import sqlalchemy as sa
import yaml

from segmentation.bi import superset
from segmentation.dataset import MALL
from segmentation.palette import segment_color
from segmentation.pipeline import run_once
from segmentation.sample import write_order_sample
from segmentation.settings import load_settings
from tests.integration.test_bi_access import populated  # noqa: F401 - two published runs of the sample

CHART_TITLES = {"Segment sizes", "Segment profiles", "Feature indexes (100 = average customer)",
                "Segment sizes over time", "Silhouette per night", "Segment size drift (PSI) per night", "Nights",
                "Customers moving between segments"}
COMPARED_TITLES = {"Customers per segmentation over time", "Silhouette per night, every segmentation",
                   "Segment size drift (PSI) per night, every segmentation", "Nights of every segmentation"}


def parsed_bundle(engine, user="superset"):
    """{path without the root folder: parsed YAML} of the zip `write_bundle` writes."""
    buffer = io.BytesIO()
    with engine.connect() as connection:
        superset.write_bundle(connection, engine.url, MALL, buffer, user)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as bundle:
        names = bundle.namelist()
        roots = {name.split("/")[0] for name in names}
        assert len(roots) == 1  # Superset strips one root folder
        return {name.split("/", 1)[1]: yaml.safe_load(bundle.read(name)) for name in names}


def by_prefix(files, prefix):
    return {path: content for path, content in files.items() if path.startswith(prefix)}


def test_the_bundle_has_one_dataset_per_view_described_by_the_views_comments(populated):
    files = parsed_bundle(populated)
    assert files["metadata.yaml"]["type"] == "Dashboard" and files["metadata.yaml"]["version"] == "1.0.0"
    with populated.connect() as connection:
        views = connection.execute(sa.text(
            "select c.relname, obj_description(c.oid, 'pg_class') from pg_class as c"
            " join pg_namespace as n on n.oid = c.relnamespace where n.nspname = 'segmentation' and c.relkind = 'v'"
        )).all()
        column_comments = dict(connection.execute(sa.text(
            "select table_name || '.' || column_name, col_description(('segmentation.' || table_name)::regclass,"
            " ordinal_position) from information_schema.columns where table_schema = 'segmentation'"
        )).all())
    datasets = {content["table_name"]: content for content in by_prefix(files, "datasets/").values()}
    assert set(datasets) == {name for name, _ in views}
    for name, comment in views:
        assert comment and datasets[name]["description"] == comment
        assert datasets[name]["schema"] == "segmentation"
        for column in datasets[name]["columns"]:
            if column["expression"] is None:
                assert column["description"] == column_comments[f"{name}.{column['column_name']}"]
                assert column["description"], f"{name}.{column['column_name']} has no comment"
            assert column["verbose_name"] and "_" not in column["verbose_name"]
    profiles = {column["column_name"]: column for column in datasets["current_segment_profiles"]["columns"]}
    assert profiles["avg_annual_income_k"]["verbose_name"] == "Average annual income (k$)"
    assert profiles["customer_count"]["verbose_name"] == "Customers"
    (database,) = by_prefix(files, "databases/").values()
    uri = sa.make_url(database["sqlalchemy_uri"])
    assert uri.password == superset.PASSWORD_MASK and database["password"] == superset.PASSWORD_PLACEHOLDER
    assert uri.username == "superset" and uri.database == populated.url.database
    assert all(dataset["database_uuid"] == database["uuid"] for dataset in datasets.values())


def test_every_chart_reads_columns_its_dataset_has_and_sits_on_the_dashboard(populated):
    files = parsed_bundle(populated)
    datasets = {content["uuid"]: content for content in by_prefix(files, "datasets/").values()}
    charts = list(by_prefix(files, "charts/").values())
    assert {chart["slice_name"] for chart in charts} == CHART_TITLES
    for chart in charts:
        dataset = datasets[chart["dataset_uuid"]]
        columns = {column["column_name"] for column in dataset["columns"]}
        params = chart["params"]
        used = [*params.get("groupby", []), *params.get("all_columns", [])]
        used += [params[key] for key in ("x_axis", "source", "target") if key in params]
        metrics = params.get("metrics", []) + ([params["metric"]] if "metric" in params else [])
        used += [metric["column"]["column_name"] for metric in metrics if metric["expressionType"] == "SIMPLE"]
        used += [item["subject"] for item in params["adhoc_filters"] if item["expressionType"] == "SIMPLE"]
        assert used and set(used) <= columns, (chart["slice_name"], set(used) - columns)
        assert chart["viz_type"] == params["viz_type"]
    with populated.connect() as connection:
        views = superset.read_views(connection)
    for plan in superset.plan_charts(views):  # what each chart declares it reads, against the view itself
        assert set(plan.columns) <= set(views[plan.view].column_names), plan.title
    (dashboard,) = by_prefix(files, "dashboards/").values()
    placed = [item["meta"]["uuid"] for item in dashboard["position"].values()
              if isinstance(item, dict) and item.get("type") == "CHART"]
    assert sorted(placed) == sorted(chart["uuid"] for chart in charts)
    for row in (item for item in dashboard["position"].values() if isinstance(item, dict) and item.get("type") == "ROW"):
        assert sum(dashboard["position"][child]["meta"]["width"] for child in row["children"]) <= 12


def test_segment_labels_keep_their_segment_colour_and_the_sankey_has_no_cycle(populated):
    files = parsed_bundle(populated)
    (dashboard,) = by_prefix(files, "dashboards/").values()
    colours = dashboard["metadata"]["label_colors"]
    with populated.connect() as connection:
        current = connection.execute(sa.text(
            "select segment_id, segment_name from segmentation.current_segment_profiles")).all()
        datasets = {content["uuid"]: content for content in by_prefix(files, "datasets/").values()}
        (sankey,) = [chart for chart in by_prefix(files, "charts/").values() if chart["viz_type"] == "sankey_v2"]
        view = datasets[sankey["dataset_uuid"]]["table_name"]
        columns = {column["column_name"] for column in datasets[sankey["dataset_uuid"]]["columns"]}
        source, target = sankey["params"]["source"], sankey["params"]["target"]
        assert {source, target} <= columns  # names checked against the view before they go into SQL
        edges = connection.execute(sa.text(f"select {source} as source, {target} as target from segmentation.{view}")).all()
    assert current and all(colours[f"S{row.segment_id} {row.segment_name}"] == segment_color(row.segment_id)
                           for row in current)
    graph = {}
    for edge in edges:
        graph.setdefault(edge.target, set()).add(edge.source)
    assert edges and list(graphlib.TopologicalSorter(graph).static_order())  # CycleError: not a Sankey
    # the Sankey's nodes are segments too: each in its segment's colour
    assert all(edge.source in colours for edge in edges if "(new customers)" not in edge.source)
    assert all(edge.target in colours for edge in edges if "(left)" not in edge.target)


def test_the_bundle_is_the_same_objects_on_every_export(populated):
    first, second = parsed_bundle(populated), parsed_bundle(populated, user="bi_reader")
    uuids = lambda files: sorted(content["uuid"] for path, content in files.items() if "uuid" in content)  # noqa: E731
    assert uuids(first) == uuids(second)  # a newer bundle updates the imported objects
    (database,) = by_prefix(second, "databases/").values()
    assert sa.make_url(database["sqlalchemy_uri"]).username == "bi_reader"


def test_column_titles_follow_the_declaration():
    assert superset.column_title("avg_spending_score", MALL) == "Average spending score (1-100)"
    assert superset.column_title("annual_income_k", MALL) == "Annual income (k$)"
    assert superset.column_title("median_age", MALL) == "Median age (years)"
    assert superset.column_title("share_of_from_segment_pct", MALL) == "Share of the previous segment (%)"
    assert superset.column_title("female_share_pct", MALL) == "Female share (%)"
    assert superset.column_title("first_order_at", MALL) == "First order at"


def dashboards(files):
    return {content["dashboard_title"]: content for content in by_prefix(files, "dashboards/").values()}


def charts_of(files, dashboard):
    by_uuid = {content["uuid"]: content for content in by_prefix(files, "charts/").values()}
    placed = [item for item in dashboard["position"].values() if isinstance(item, dict) and item.get("type") == "CHART"]
    return {item["meta"]["chartId"]: by_uuid[item["meta"]["uuid"]] for item in placed}


def test_segments_are_shown_by_id_and_full_name_and_the_pie_in_the_views_percentages(populated):
    files = parsed_bundle(populated)
    datasets = {content["uuid"]: content for content in by_prefix(files, "datasets/").values()}
    (profiles,) = [dataset for dataset in datasets.values() if dataset["table_name"] == "current_segment_profiles"]
    (segment,) = [column for column in profiles["columns"] if column["column_name"] == superset.SEGMENT]
    with populated.connect() as connection:  # the calculated column, as Superset will run it
        shown = connection.execute(sa.text(
            f"select segment_id, segment_name, {segment['expression']} as segment, customer_share_pct"
            " from segmentation.current_segment_profiles")).all()
    assert shown and all(row.segment == superset.segment_text(row.segment_id, row.segment_name) for row in shown)
    assert any("," in row.segment for row in shown)  # not cut at the first comma like segment_label
    charts = list(by_prefix(files, "charts/").values())
    for chart in charts:
        grouped = chart["params"].get("groupby", [])
        assert "segment_label" not in grouped and "segment_name" not in grouped, chart["slice_name"]
        if "segment_id" in {column["column_name"] for column in datasets[chart["dataset_uuid"]]["columns"]}:
            if chart["viz_type"] != "table":
                assert superset.SEGMENT in grouped, chart["slice_name"]
    (pie,) = [chart for chart in charts if chart["viz_type"] == "pie"]
    assert pie["params"]["show_legend"] and pie["params"]["number_format"] == ".1%"
    with populated.connect() as connection:
        shares = connection.execute(sa.text(
            f"select {superset.SEGMENT}, {pie['params']['metric']['sqlExpression']} as share from"
            f" (select {segment['expression']} as segment, * from segmentation.current_segment_profiles) as profile"
            " group by 1")).all()
    by_segment = {row.segment: row.customer_share_pct for row in shown}
    assert {row.segment: round(float(row.share) * 100, 1) for row in shares} == {
        name: float(pct) for name, pct in by_segment.items()}  # the view's rounding, one decimal


def test_time_runs_along_the_x_axis_and_held_runs_are_their_own_series(populated):
    files = parsed_bundle(populated)
    datasets = {content["uuid"]: content for content in by_prefix(files, "datasets/").values()}
    charts = {chart["slice_name"]: chart for chart in by_prefix(files, "charts/").values()}
    for title in ("Segment sizes over time", "Silhouette per night", "Segment size drift (PSI) per night"):
        params = charts[title]["params"]
        columns = {column["column_name"]: column for column in datasets[charts[title]["dataset_uuid"]]["columns"]}
        assert columns[params["x_axis"]]["is_dttm"] and not params.get("xAxisForceCategorical"), title
        assert params["time_grain_sqla"] == "P1D"
    assert charts["Segment sizes over time"]["params"]["x_axis"] == "published_date"
    silhouette, drift = charts["Silhouette per night"]["params"], charts["Segment size drift (PSI) per night"]["params"]
    assert [metric["column"]["column_name"] for metric in silhouette["metrics"]] == ["silhouette"]
    assert [metric["column"]["column_name"] for metric in drift["metrics"]] == ["size_psi"]  # an axis each
    assert silhouette["groupby"] == drift["groupby"] == ["status"]
    (line,) = drift["annotation_layers"]
    assert line["annotationType"] == "FORMULA" and float(line["value"]) == 0.25
    (dashboard,) = dashboards(files).values()
    colours = dashboard["metadata"]["label_colors"]
    assert colours["held"] != colours["published"]


def test_the_filter_bar_has_a_published_date_and_a_segment_filter_scoped_to_the_charts_they_fit(populated):
    files = parsed_bundle(populated)
    datasets = {content["uuid"]: content for content in by_prefix(files, "datasets/").values()}
    (dashboard,) = dashboards(files).values()
    charts = charts_of(files, dashboard)
    filters = {item["name"]: item for item in dashboard["metadata"]["native_filter_configuration"]}
    assert set(filters) == {"Published date", "Segment"}
    for item in filters.values():
        assert sorted(item["chartsInScope"] + item["scope"]["excluded"]) == sorted(charts)
    dated = {number for number, chart in charts.items()
             if any(f.get("operator") == "TEMPORAL_RANGE" for f in chart["params"]["adhoc_filters"])}
    assert set(filters["Published date"]["chartsInScope"]) == dated and len(dated) >= 4
    assert filters["Published date"]["filterType"] == "filter_time"
    segment = filters["Segment"]
    (target,) = segment["targets"]
    assert segment["filterType"] == "filter_select" and target["column"]["name"] == superset.SEGMENT
    assert datasets[target["datasetUuid"]]["table_name"] == "current_segment_profiles"
    for number in segment["chartsInScope"]:
        columns = {column["column_name"] for column in datasets[charts[number]["dataset_uuid"]]["columns"]}
        assert superset.SEGMENT in columns


@pytest.fixture
def two_segmentations(populated, tmp_path):
    """The two published runs of `populated` (default) and two nights of an order log as
    segmentation rfm (two, so that its Sankey has a pair of runs to draw)."""
    settings = load_settings(database_url="postgresql://unused@localhost/unused", write_report=False,
                             gap_references=2, stability_resamples=2, segmentation="rfm")
    for seed, rows in ((7, 1500), (8, 1700)):
        run_once(populated, settings, orders_path=write_order_sample(tmp_path / f"orders{seed}.csv", rows, seed))
    return populated


def test_each_segmentation_has_its_own_dashboard_on_its_own_views(two_segmentations):
    files = parsed_bundle(two_segmentations)
    boards = dashboards(files)
    assert set(boards) == {"Customer segments", "Customer segments: rfm", "Customer segments: every segmentation"}
    compared = boards.pop("Customer segments: every segmentation")
    datasets = {content["uuid"]: content for content in by_prefix(files, "datasets/").values()}
    names = [dataset["table_name"] for dataset in datasets.values()]
    assert len(names) == len(set(names))  # Superset on SQLite keeps table names unique across schemas
    with two_segmentations.connect() as connection:
        default_runs = set(connection.execute(sa.text(
            "select run_id from segmentation.run_history where segmentation = 'default'")).scalars())
        for title, board in boards.items():
            schema = "segmentation" if title == "Customer segments" else "segments_rfm"
            charts = charts_of(files, board)
            assert {chart["slice_name"] for chart in charts.values()} == CHART_TITLES
            for chart in charts.values():
                dataset = datasets[chart["dataset_uuid"]]
                assert dataset["schema"] == schema
                relation = f"({dataset['sql']}) as virtual" if dataset["sql"] else f"{schema}.{dataset['table_name']}"
                mine = [item["sqlExpression"] for item in chart["params"]["adhoc_filters"]
                        if item["expressionType"] == "SQL"] or ["true"]
                columns = {column["column_name"] for column in dataset["columns"]}
                if "run_id" in columns:  # each dashboard shows its own segmentation's runs only
                    runs = set(connection.execute(sa.text(
                        f"select run_id from {relation} where {' and '.join(mine)}")).scalars())
                    assert runs and (runs <= default_runs) == (schema == "segmentation"), chart["slice_name"]
            labels = board["metadata"]["label_colors"]
            segments = connection.execute(sa.text(
                f"select segment_id, segment_name from {schema}.current_segment_profiles")).all()
            assert all(superset.segment_text(*row) in labels for row in segments)
    rfm = [dataset for dataset in datasets.values() if dataset["schema"] == "segments_rfm"]
    assert rfm and all(dataset["sql"] and '"segments_rfm"' in dataset["sql"] for dataset in rfm)
    profiles = {column["column_name"]: column for dataset in rfm if dataset["table_name"].startswith(
        "current_segment_profiles") for column in dataset["columns"]}
    assert profiles["avg_recency_days"]["verbose_name"].startswith("Average recency")  # under rfm's declaration

    # the dashboard of every segmentation: the cross views, a Segmentation filter on every chart
    charts = charts_of(files, compared)
    assert {chart["slice_name"] for chart in charts.values()} == COMPARED_TITLES
    filters = {item["name"]: item for item in compared["metadata"]["native_filter_configuration"]}
    assert set(filters) == {"Published date", "Segmentation"}
    assert sorted(filters["Segmentation"]["chartsInScope"]) == sorted(charts)
    (target,) = filters["Segmentation"]["targets"]
    assert datasets[target["datasetUuid"]]["table_name"] == "run_history" and target["column"]["name"] == "segmentation"
    with two_segmentations.connect() as connection:
        for chart in charts.values():
            dataset = datasets[chart["dataset_uuid"]]
            assert dataset["schema"] == "segmentation" and "segmentation" in chart["params"].get(
                "groupby", []) + chart["params"].get("all_columns", [])
            names = set(connection.execute(sa.text(
                f"select distinct segmentation from segmentation.{dataset['table_name']}")).scalars())
            assert names == {"default", "rfm"}, chart["slice_name"]
    colours = compared["metadata"]["label_colors"]
    assert colours["default"] != colours["rfm"] and colours["rfm, held"] == colours["default, held"]
