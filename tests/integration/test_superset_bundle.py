"""The Superset bundle, parsed: every chart reads a dataset of the bundle and columns its view has."""

import graphlib
import io
import zipfile

import sqlalchemy as sa
import yaml

from segmentation.bi import superset
from segmentation.dataset import MALL
from segmentation.palette import segment_color
from tests.integration.test_bi_access import populated  # noqa: F401 - two published runs of the sample

CHART_TITLES = {"Segment sizes", "Segment profiles", "Feature indexes (100 = average customer)",
                "Segment sizes over runs", "Customers moving between segments", "Run quality"}


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
        used += [metric["column"]["column_name"] for metric in metrics]
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
    assert current and all(colours[row.segment_name] == segment_color(row.segment_id) for row in current)
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
