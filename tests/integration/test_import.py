"""Import into a real PostgreSQL: every line accounted for, refused files load nothing."""

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from segmentation.errors import ImportRefused
from segmentation.ingest import import_file
from segmentation.settings import load_settings
from tests.conftest import TEST_DATA

DEFECTS = TEST_DATA / "defects"
EXPECTED = json.loads((DEFECTS / "expected.json").read_text(encoding="utf-8"))


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", **overrides)


def batch(engine, batch_id):
    with engine.connect() as connection:
        return connection.execute(
            sa.text("select * from segmentation.import_batches where batch_id = :id"), {"id": batch_id}
        ).one()


def rejects(engine, batch_id):
    with engine.connect() as connection:
        return {
            row.line_number: row
            for row in connection.execute(
                sa.text("select * from segmentation.import_rejects where batch_id = :id"), {"id": batch_id}
            )
        }


def customer_count(engine):
    with engine.connect() as connection:
        return connection.execute(sa.text("select count(*) from segmentation.customers")).scalar_one()


def test_the_defect_corpus_has_at_least_twenty_kinds():
    assert len(EXPECTED) >= 20
    assert {path.name for path in DEFECTS.glob("*.csv")} == set(EXPECTED)


SEEDED_ID = 987_654_321  # in no corpus file


def seed_one_customer(engine):
    """Make `customers` non-empty so that an import takes the staging-table merge."""
    with engine.begin() as connection:
        connection.execute(sa.text("insert into segmentation.customers (customer_id) values (:id)"), {"id": SEEDED_ID})


@pytest.mark.parametrize("method", ["first load", "merge"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_defective_file_is_accounted_for_as_expected(engine, name, method):
    expected = EXPECTED[name]
    path = DEFECTS / name
    if method == "merge":
        seed_one_customer(engine)
    before = customer_count(engine)
    if "refused" in expected:
        with pytest.raises(ImportRefused, match=expected["refused"].replace("(", r"\(")) as caught:
            import_file(engine, path, settings())
        assert str(path) in str(caught.value)  # the message names the file
        assert customer_count(engine) == before
        with engine.connect() as connection:
            failed = connection.execute(sa.text("select status, error from segmentation.import_batches")).one()
        assert failed.status == "failed" and expected["refused"] in failed.error
        return
    result = import_file(engine, path, settings())
    repeats = any(reason.startswith("customer id") and "appears again" in reason
                  for reason in expected["rejected"].values())
    assert result.method == ("merge" if repeats else method)  # a repeated id needs the merge
    row = batch(engine, result.batch_id)
    assert row.status == "succeeded"
    assert row.rows_inserted == expected["inserted"]
    assert row.rows_read == row.rows_inserted + row.rows_updated + row.rows_unchanged + row.rows_rejected
    stored = rejects(engine, result.batch_id)
    assert sorted(stored) == sorted(int(line) for line in expected["rejected"])
    raw_lines = path.read_bytes().decode("utf-8-sig").splitlines()
    for line, reason in expected["rejected"].items():
        assert stored[int(line)].reason.startswith(reason)
        assert stored[int(line)].raw_line == raw_lines[int(line) - 1]  # verbatim, header is line 1
    for customer_id, (age, income, spending) in expected.get("values", {}).items():
        with engine.connect() as connection:
            values = connection.execute(
                sa.text("select age, annual_income_k, spending_score from segmentation.customers where customer_id = :id"),
                {"id": int(customer_id)},
            ).one()
        assert (values.age, None if values.annual_income_k is None else str(values.annual_income_k),
                values.spending_score) == (age, income, spending)


def test_importing_the_same_file_again_changes_nothing(engine, mall_csv):
    first = import_file(engine, mall_csv, settings())
    with engine.connect() as connection:
        before = connection.execute(sa.text("select * from segmentation.customers order by customer_id")).all()
    second = import_file(engine, mall_csv, settings())
    with engine.connect() as connection:
        after = connection.execute(sa.text("select * from segmentation.customers order by customer_id")).all()
    assert (first.rows_inserted, second.rows_inserted, second.rows_updated, second.rows_unchanged) == (200, 0, 0, 200)
    assert before == after  # not even updated_at moved


def test_changed_rows_are_updated_and_counted(engine, tmp_path, mall_csv):
    import_file(engine, mall_csv, settings())
    lines = mall_csv.read_text().splitlines()
    lines[1] = "0001,Male,19,15,40"  # spending score 39 -> 40
    lines.append("0201,Female,30,70,50")
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n")
    result = import_file(engine, changed, settings())
    assert (result.rows_inserted, result.rows_updated, result.rows_unchanged) == (1, 1, 199)


def test_full_export_marks_missing_customers_inactive_and_keeps_them(engine, tmp_path, mall_csv):
    import_file(engine, mall_csv, settings())
    lines = mall_csv.read_text().splitlines()
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(lines[:151]) + "\n")  # header and customers 1..150
    result = import_file(engine, partial, settings(export_mode="full"))
    assert result.rows_deactivated == 50
    with engine.connect() as connection:
        counts = connection.execute(
            sa.text("select count(*) filter (where is_active), count(*) from segmentation.customers")
        ).one()
    assert tuple(counts) == (150, 200)


def test_incremental_export_leaves_missing_customers_active(engine, tmp_path, mall_csv):
    import_file(engine, mall_csv, settings())
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(mall_csv.read_text().splitlines()[:11]) + "\n")
    assert import_file(engine, partial, settings()).rows_deactivated == 0
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(*) from segmentation.customers where is_active")).scalar() == 200


def test_a_refused_file_leaves_customers_exactly_as_they_were(engine, mall_csv):
    import_file(engine, mall_csv, settings())
    with engine.connect() as connection:
        before = connection.execute(sa.text("select * from segmentation.customers order by customer_id")).all()
    with pytest.raises(ImportRefused):
        import_file(engine, DEFECTS / "not_utf8.csv", settings(export_mode="full"))
    with engine.connect() as connection:
        after = connection.execute(sa.text("select * from segmentation.customers order by customer_id")).all()
    assert before == after


def test_the_injection_attempt_is_just_a_rejected_line(engine):
    import_file(engine, DEFECTS / "sql_injection.csv", settings())
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(*) from segmentation.customers")).scalar() == 1


GOOD = st.builds(
    lambda i, g, a, inc, s: f"{i},{g},{a},{inc},{s}",
    st.integers(1, 60), st.sampled_from(["Male", "Female", "m", "F", ""]), st.integers(0, 120),
    st.integers(0, 200), st.integers(1, 100),
)
BAD = st.one_of(
    st.sampled_from(["", "abc", "1,Male,19,15", "1,Male,19,15,39,1", "0,Male,1,1,1", "5,Alien,1,1,1",
                     "5,Male,200,1,1", "5,Male,1,-1,1", "5,Male,1,1,0", '5,"Male,1,1,1']),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r\x00\x85\u2028\u2029\x0b\x0c\x1c\x1d\x1e"), max_size=30),
)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(GOOD, BAD), min_size=1, max_size=40))
def test_random_mixes_of_good_and_bad_lines_always_add_up(engine, tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("mix") / "mix.csv"
    path.write_text("CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n" + "\n".join(lines) + "\n",
                    encoding="utf-8")
    try:
        result = import_file(engine, path, settings())
    except ImportRefused as refused:  # only a file with no data lines may be refused
        assert "no customer lines" in str(refused)
        return
    row = batch(engine, result.batch_id)
    assert row.rows_read == len(lines)
    assert row.rows_read == row.rows_inserted + row.rows_updated + row.rows_unchanged + row.rows_rejected
    stored = rejects(engine, result.batch_id)
    assert len(stored) == row.rows_rejected
    assert all(2 <= line <= len(lines) + 1 for line in stored)


def test_first_load_and_merge_store_the_same_customers_and_rejects(engine, tmp_path, mall_csv, monkeypatch):
    """The two load paths and the plain-block and line-by-line readers must agree exactly."""
    from segmentation import ingest

    monkeypatch.setattr(ingest, "BLOCK_BYTES", 256)  # many blocks: some plain, some not
    lines = mall_csv.read_text().splitlines()
    odd = ["301, male ,40,50.5,60", '302,"F","41","0","1"', "303,,,,", "304,Alien,1,1,1", "", "305,Male,1,1",
           "306,Female,121,1,1", "0307,f,007,082.50,099", "308,Male,1,1e2,5", "abc", "309;Male;1;1;1"]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join(lines[:60] + odd + lines[60:]) + "\n")

    def snapshot():
        with engine.connect() as connection:
            customers = connection.execute(sa.text(
                "select customer_id, gender, age, annual_income_k, spending_score, is_active"
                " from segmentation.customers where customer_id <> :seeded order by customer_id"
            ), {"seeded": SEEDED_ID}).all()
            stored = connection.execute(sa.text(
                "select line_number, raw_line, reason from segmentation.import_rejects"
                " where batch_id = (select max(batch_id) from segmentation.import_batches) order by line_number"
            )).all()
        return customers, stored

    first = import_file(engine, mixed, settings())
    loaded = snapshot()
    with engine.begin() as connection:
        connection.execute(sa.text("delete from segmentation.customers"))
    seed_one_customer(engine)
    merged = import_file(engine, mixed, settings())
    assert (first.method, merged.method) == ("first load", "merge")
    assert (first.rows_read, first.rows_inserted, first.rows_rejected) == (211, 205, 6)
    assert (merged.rows_read, merged.rows_inserted, merged.rows_rejected) == (211, 205, 6)
    assert snapshot() == loaded
    customers, stored = loaded
    assert [row.line_number for row in stored] == [64, 65, 66, 67, 70, 71]  # header = line 1, odd lines from 61
    by_id = {row.customer_id: row for row in customers}
    assert (by_id[307].gender, by_id[307].age, str(by_id[307].annual_income_k), by_id[307].spending_score) == (
        "Female", 7, "82.50", 99)
    assert (by_id[301].gender, str(by_id[301].annual_income_k)) == ("Male", "50.5")


@pytest.mark.parametrize(("order", "expected"), [("sorted", "merge join"), ("shuffled", "planner's choice")])
def test_the_stage_is_matched_by_merge_join_only_when_both_tables_are_in_id_order(
    engine, tmp_path, mall_csv, caplog, order, expected
):
    import logging
    import random

    header, *lines = mall_csv.read_text().splitlines()
    if order == "shuffled":
        random.Random(3).shuffle(lines)
    path = tmp_path / f"{order}.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    import_file(engine, path, settings())
    with caplog.at_level(logging.DEBUG, logger="segmentation.ingest"):
        again = import_file(engine, path, settings())
    assert (again.method, again.rows_unchanged) == ("merge", 200)
    assert expected in caplog.text


@pytest.mark.parametrize("method", ["first load", "merge"])
def test_a_line_lost_between_reader_and_copy_fails_the_import_instead(engine, mall_csv, monkeypatch, method):
    """Defence against our own bugs: the server must take one row per line the reader counted."""
    from segmentation import ingest

    if method == "merge":
        seed_one_customer(engine)
    before = customer_count(engine)
    records = ingest._Writer.records

    def drop_first_record(self, first, text):
        return records(self, first, text).split("\n", 1)[1]

    monkeypatch.setattr(ingest._Writer, "records", drop_first_record)
    with pytest.raises(RuntimeError, match=r"200 (valid|read) lines but COPY took 19\d rows"):
        import_file(engine, mall_csv, settings())
    assert customer_count(engine) == before
    with engine.connect() as connection:
        status = connection.execute(sa.text("select status from segmentation.import_batches")).scalar_one()
    assert status == "failed"


VALUE = st.one_of(
    st.integers(0, 130).map(str),
    st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(0, 3), st.integers(0, 150)),
    st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["", "Male", "Female", "male", "M", "f", "FEMALE", " 7", "1e2", "5.", ".5", '"9"', '"Male"',
                     '"m"', '""', '"082.50"', '"0"']),
)
PLAINISH_LINE = st.builds(lambda i, rest: ",".join([i, *rest]),
                          st.one_of(st.integers(1, 10**6).map(str), st.integers(1, 10**6).map('"{:04d}"'.format)),
                          st.lists(VALUE, min_size=4, max_size=4))


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(PLAINISH_LINE, min_size=1, max_size=60))
def test_the_plain_block_path_stores_exactly_what_the_line_by_line_path_stores(engine, tmp_path_factory, lines):
    """What PostgreSQL makes of lines sent as they are must equal what parse_line makes of them."""
    from unittest import mock

    from segmentation import ingest

    path = tmp_path_factory.mktemp("plain") / "plain.csv"
    path.write_text("CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n" + "\n".join(lines) + "\n")

    def load():
        with engine.begin() as connection:
            connection.execute(sa.text("delete from segmentation.customers"))
        result = import_file(engine, path, settings())
        with engine.connect() as connection:
            customers = connection.execute(sa.text(
                "select customer_id, gender, age, annual_income_k, spending_score from segmentation.customers"
                " order by customer_id")).all()
            stored = connection.execute(sa.text(
                "select line_number, raw_line, reason from segmentation.import_rejects where batch_id = :id"
                " order by line_number"), {"id": result.batch_id}).all()
        return (result.rows_inserted, result.rows_rejected), customers, stored

    fast = load()
    with mock.patch.object(ingest, "plain_line_pattern", lambda *args, **kwargs: None):
        careful = load()
    assert fast == careful
