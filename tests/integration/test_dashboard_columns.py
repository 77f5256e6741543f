"""Columns a dashboard needs (issue 13 items 2 and 3): labels, colours, order, dates, percentages
as the command line prints them, rounded averages, and transitions that chart as a Sankey."""

import graphlib

import pytest
import sqlalchemy as sa

from segmentation import display
from segmentation.palette import segment_color
from segmentation.pipeline import run_once
from segmentation.settings import load_settings

#: shares whose percentage sits on a rounding tie (0.4115: the CLI printed 41.1, SQL 41.2), and plain ones
SHARES = [0.4115, 823 / 2000, 1 / 16, 0.1235, 0.3265, 0.0005, 0.00049, 0.0, 1.0, 81 / 200, 1 / 3, 2 / 3, 39 / 300]


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False,
                         gap_references=2, stability_resamples=2, **overrides)


def rows(engine, statement, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(statement), params).all()


#: one feature's segment averages: far apart, close (60.51 / 60.54), equal, closer than a millionth, negative
DECIMAL_CASES = [[55.3, 86.5, 88.2, 26.3, 25.7], [60.51, 60.54, 30.2], [0.1, 0.14], [40027.9, 17914.7], [5.0, 5.0],
                 [1.0, 1.0000001], [0.0, 0.0], [-3.2, 4.75, 4.7501], [123456.7, 123456.71], [0.00024, 0.00031]]


@pytest.mark.parametrize("values", DECIMAL_CASES)
def test_the_views_show_averages_with_the_decimals_the_command_line_uses(engine, values):
    found = rows(engine, f"""
        with raw as (select value, 1 as part from unnest(cast(:values as float8[])) as value),
        gaps as (select raw.*, {display.sql_gap("raw.value", "raw.part")} as gap from raw)
        select distinct {display.sql_decimals("gaps.value", "gaps.gap", "gaps.part")} from gaps""", values=values)
    assert [row[0] for row in found] == [display.decimals(values)]
    shown = {display.figure(value, display.decimals(values)) for value in values}
    assert len(shown) == len({round(value, display.MAX_DECIMALS) for value in values})  # different values differ


def test_percentages_in_sql_round_as_the_command_line_prints_them(engine):
    found = rows(engine, f"select share, {display.sql_percent('share')} from unnest(cast(:shares as float8[])) as share",
                 shares=SHARES)
    assert [(share, display.percent(share)) for share in SHARES] == [tuple(row) for row in found]
    assert f"{display.percent(0.4115)}%" == "41.2%"  # Python's own '{:.1%}' says 41.1% for this share


def test_labels_and_colours_in_sql_are_the_python_ones(engine):
    names = ["High income, high spending", "Champions", "Very high income, very high balance, very high credit limit",
             "Younger, high spending, mostly female", "Ältere Kundinnen mit hohem Einkommen", "A, B"]
    cases = [(segment_id, names[segment_id % len(names)]) for segment_id in range(1, 46)] + [(123456, names[2])]
    found = rows(
        engine,
        f"select {display.sql_label('profile.segment_id', 'profile.segment_name')},"
        f" {display.sql_color('profile.segment_id')}"
        " from unnest(cast(:ids as int[]), cast(:names as text[])) as profile (segment_id, segment_name)",
        ids=[segment_id for segment_id, _ in cases], names=[name for _, name in cases],
    )
    expected = [(display.segment_label(*case), segment_color(case[0])) for case in cases]
    assert [tuple(row) for row in found] == expected
    assert display.segment_label(3, "High income, high spending") == "S3 High income"
    assert all(len(label) <= display.LABEL_LENGTH for label, _ in expected)


@pytest.fixture
def three_runs(engine, tmp_path, customers_csv):
    """Three published runs: the second file drops one customer and adds one, the third is the first."""
    lines = customers_csv.read_text().splitlines()
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join([lines[0], *lines[2:], "90001,Female,30,60,50"]) + "\n")
    return [run_once(engine, settings(), path).run_id for path in (customers_csv, changed, customers_csv)]


def test_segment_columns_follow_the_python_rules_in_every_view(engine, three_runs):
    profiles = rows(engine, "select * from segmentation.current_segment_profiles order by segment_id")
    for order, profile in enumerate(profiles, start=1):
        assert profile.segment_label == display.segment_label(profile.segment_id, profile.segment_name)
        assert profile.segment_color == segment_color(profile.segment_id)
        assert profile.segment_order == order
        assert profile.customer_share_pct == display.percent(profile.customer_share)
        assert profile.female_share_pct == display.percent(profile.female_share)
        assert profile.published_date == profile.published_at.date()
    assert len({profile.segment_label for profile in profiles}) == len(profiles)
    expected = {(p.segment_id, p.segment_label, p.segment_order, p.segment_color) for p in profiles}
    for view in ("current_customer_segments", "current_segment_features"):
        shown = rows(engine, f"select distinct segment_id, segment_label, segment_order, segment_color from segmentation.{view}")
        assert set(map(tuple, shown)) == expected, view
    history = rows(engine, "select segment_id, segment_label, segment_color, run_id, is_latest_of_day"
                           " from segmentation.segment_profile_history")
    assert {(row.segment_id, row.segment_label, row.segment_color) for row in history if row.run_id == three_runs[-1]} \
        == {(segment_id, label, color) for segment_id, label, _, color in expected}
    # all three runs were published today: only the last one stands for the day
    assert {row.run_id for row in history if row.is_latest_of_day} == {three_runs[-1]}


def test_averages_are_rounded_in_the_views_and_kept_whole_in_the_tables(engine, three_runs):
    found = rows(engine, """
        select view.segment_id, view.avg_annual_income_k, view.median_age, view.annual_income_index,
               income.mean as income_mean, income.index_value as income_index, age.median as age_median,
               array_agg(income.mean) over () as incomes, array_agg(age.mean) over () as ages
        from segmentation.current_segment_profiles as view
        join segmentation_internal.segment_features as income
            on income.run_id = view.run_id and income.segment_id = view.segment_id and income.feature = 'annual_income_k'
        join segmentation_internal.segment_features as age
            on age.run_id = view.run_id and age.segment_id = view.segment_id and age.feature = 'age'
    """)
    assert found and any(row.income_mean != round(row.income_mean, 1) for row in found)  # tables: full precision
    for row in found:
        income_decimals, age_decimals = display.decimals(row.incomes), display.decimals(row.ages)
        assert row.avg_annual_income_k == pytest.approx(round(row.income_mean, income_decimals), abs=1e-9)
        assert row.median_age == pytest.approx(round(row.age_median, age_decimals), abs=1e-9)
        assert row.annual_income_index == pytest.approx(round(row.income_index), abs=0.5)
        assert row.annual_income_index == int(row.annual_income_index)
    features = rows(engine, "select category, mean, share_pct from segmentation.current_segment_features")
    assert all((row.share_pct is None) == (row.category is None) for row in features)


def test_transitions_chart_as_a_sankey_over_every_pair_of_published_runs(engine, three_runs):
    first, second, third = three_runs
    history = rows(engine, "select * from segmentation.segment_transitions_history")
    assert {(row.from_run_id, row.to_run_id) for row in history} == {(first, second), (second, third)}
    latest = rows(engine, "select * from segmentation.segment_transitions")
    assert set(map(tuple, latest)) == {tuple(row) for row in history if row.to_run_id == third}
    assert not {row.from_label for row in latest} & {row.to_label for row in latest}  # no node on both sides
    graph = graphlib.TopologicalSorter()
    for row in history:
        graph.add(row.to_label, row.from_label)
    list(graph.static_order())  # raises CycleError if the history had a cycle
    new = [row for row in history if row.from_segment_id is None]
    left = [row for row in history if row.to_segment_id is None]
    # the second file adds customer 90001 and lacks the first file's first customer; the third is the first again
    assert {(row.from_run_id, row.customer_count) for row in new} == {(first, 1), (second, 1)}
    assert {(row.from_run_id, row.customer_count) for row in left} == {(first, 1), (second, 1)}
    assert all(row.from_label == f"run {row.from_run_id}: (new customers)" for row in new)
    assert all(row.to_label == f"run {row.to_run_id}: (left)" for row in left)
    for pair in ((first, second), (second, third)):
        assert sum(row.customer_count for row in history if (row.from_run_id, row.to_run_id) == pair) == 301
        shares = [row for row in history if (row.from_run_id, row.to_run_id) == pair and row.from_segment_id == 1]
        assert all(row.share_of_from_segment_pct == display.percent(row.share_of_from_segment) for row in shares)


def test_transitions_cover_every_pair_of_consecutive_published_runs(engine, customers_csv):
    run_ids = [run_once(engine, settings(keep_customer_rows_runs=2), customers_csv).run_id for _ in range(4)]
    pairs = rows(engine, "select distinct from_run_id, to_run_id from segmentation.segment_transitions_history"
                         " order by 1")
    assert [tuple(pair) for pair in pairs] == list(zip(run_ids, run_ids[1:]))
    sizes = rows(engine, "select to_run_id, sum(customer_count) from segmentation.segment_transitions_history group by 1")
    assert {size for _, size in sizes} == {300}  # every customer stayed, in every pair


def test_run_history_has_no_server_path_but_a_date(engine, customers_csv):
    run_once(engine, settings(), customers_csv)
    columns = rows(engine, "select * from segmentation.run_history")[0]._fields
    assert "report_path" not in columns and "published_date" in columns


def _columns_and_comments(engine, view):
    return rows(engine, """
        select a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum)
        from pg_attribute a where a.attrelid = cast(:view as regclass) and a.attnum > 0 order by a.attnum
    """, view=f"segmentation.{view}")


def test_a_new_database_has_the_declared_views_a_mall_run_generates(engine, customers_csv):
    views = ("current_customer_segments", "current_segment_profiles", "segment_profile_history")
    migrated = {view: _columns_and_comments(engine, view) for view in views}
    run_once(engine, settings(), customers_csv)  # the packaged sample has the mall's columns
    from segmentation.publish.views import VIEWS

    generated = rows(engine, "select schema_name, view_name from segmentation_internal.view_versions")
    assert {tuple(row) for row in generated} == {("segmentation", view) for view in VIEWS}
    for view in views:
        assert _columns_and_comments(engine, view) == migrated[view], view
