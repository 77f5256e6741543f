"""Import into a real PostgreSQL: every line accounted for, refused files load nothing."""

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from segmentation import db
from segmentation.dataset import MALL
from segmentation.errors import ImportRefused
from segmentation.ingest import ensure_dataset, import_file
from segmentation.sample import write_sample
from segmentation.settings import load_settings
from tests.conftest import TEST_DATA

DEFECTS = TEST_DATA / "defects"
EXPECTED = json.loads((DEFECTS / "expected.json").read_text(encoding="utf-8"))


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", **overrides)


def batch(engine, batch_id):
    with engine.connect() as connection:
        return connection.execute(
            sa.text("select * from segmentation_internal.import_batches where batch_id = :id"), {"id": batch_id}
        ).one()


def rejects(engine, batch_id):
    with engine.connect() as connection:
        return {
            row.line_number: row
            for row in connection.execute(
                sa.text("select * from segmentation_internal.import_rejects where batch_id = :id"), {"id": batch_id}
            )
        }


def customer_count(engine):
    with engine.connect() as connection:
        return connection.execute(sa.text("select count(*) from segmentation_internal.customers")).scalar_one()


def test_the_defect_corpus_has_at_least_twenty_kinds():
    assert len(EXPECTED) >= 20
    assert {path.name for path in DEFECTS.glob("*.csv")} == set(EXPECTED)


SEEDED_ID = "987654321"  # in no corpus file


def seed_one_customer(engine):
    """Make `customers` non-empty so that an import takes the staging-table merge."""
    with engine.begin() as connection:
        db.ensure_partition(connection, "customers", 1)  # the default segmentation's
        connection.execute(
            sa.text("insert into segmentation_internal.customers (segmentation_id, customer_id, dataset_id, attributes)"
                    " values (1, :id, :dataset_id, '{Male,30,50,50}')"),
            {"id": SEEDED_ID, "dataset_id": ensure_dataset(connection, MALL)},
        )


def attributes(engine, customer_id):
    """The stored attributes (text, declaration order) of one customer."""
    with engine.connect() as connection:
        return connection.execute(
            sa.text("select attributes from segmentation_internal.customers where customer_id = :id"), {"id": customer_id}
        ).scalar_one()


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
            import_file(engine, path, settings(), 1)
        assert str(path) in str(caught.value)  # the message names the file
        assert customer_count(engine) == before
        with engine.connect() as connection:
            failed = connection.execute(sa.text("select status, error from segmentation_internal.import_batches")).one()
        assert failed.status == "failed" and expected["refused"] in failed.error
        return
    result = import_file(engine, path, settings(), 1)
    repeats = any(reason.startswith("customer id") and "appears again" in reason
                  for reason in expected["rejected"].values())
    assert result.method == ("merge" if repeats else method)  # a repeated id needs the merge
    row = batch(engine, result.batch_id)
    assert row.status == "succeeded"
    assert row.rows_inserted == expected["inserted"]
    assert row.rows_read == row.rows_inserted + row.rows_updated + row.rows_unchanged + row.rows_rejected
    stored = rejects(engine, result.batch_id)
    assert sorted(stored) == sorted(int(line) for line in expected["rejected"])
    raw_lines = path.read_bytes().decode("utf-8-sig", "replace").splitlines()  # a byte that is not UTF-8: U+FFFD
    for line, reason in expected["rejected"].items():
        assert stored[int(line)].reason.startswith(reason)
        assert stored[int(line)].raw_line == raw_lines[int(line) - 1]  # verbatim, header is line 1
    assert result.rows_rejected == len(expected["rejected"])
    assert result.reject_share == pytest.approx(result.rows_rejected / result.rows_read)
    assert sum(count for _, count in result.top_reasons) <= result.rows_rejected
    assert bool(result.top_reasons) == bool(result.rows_rejected)
    for customer_id, (age, income, spending) in expected.get("values", {}).items():
        assert attributes(engine, customer_id)[1:] == [age, income, spending]


@pytest.mark.quick
def test_importing_the_same_file_again_changes_nothing(engine, customers_csv):
    first = import_file(engine, customers_csv, settings(), 1)
    with engine.connect() as connection:
        before = connection.execute(sa.text("select * from segmentation_internal.customers order by customer_id")).all()
    second = import_file(engine, customers_csv, settings(), 1)
    with engine.connect() as connection:
        after = connection.execute(sa.text("select * from segmentation_internal.customers order by customer_id")).all()
    assert (first.rows_inserted, second.rows_inserted, second.rows_updated, second.rows_unchanged) == (300, 0, 0, 300)
    assert before == after  # not even updated_at moved


def test_changed_rows_are_updated_and_counted(engine, tmp_path, customers_csv):
    import_file(engine, customers_csv, settings(), 1)
    lines = customers_csv.read_text().splitlines()
    assert lines[1] == "0001,Male,48,91,21"
    lines[1] = "0001,Male,48,91,22"  # spending score 21 -> 22
    lines.append("0301,Female,30,70,50")  # the sample's ids are 1..300
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n")
    result = import_file(engine, changed, settings(), 1)
    assert (result.rows_inserted, result.rows_updated, result.rows_unchanged) == (1, 1, 299)


def test_full_export_marks_missing_customers_inactive_and_keeps_them(engine, tmp_path, customers_csv):
    import_file(engine, customers_csv, settings(), 1)
    lines = customers_csv.read_text().splitlines()
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(lines[:151]) + "\n")  # header and customers 1..150
    result = import_file(engine, partial, settings(export_mode="full"), 1)
    assert result.rows_deactivated == 150
    with engine.connect() as connection:
        counts = connection.execute(
            sa.text("select count(*) filter (where is_active), count(*) from segmentation_internal.customers")
        ).one()
    assert tuple(counts) == (150, 300)


def test_incremental_export_leaves_missing_customers_active(engine, tmp_path, customers_csv):
    import_file(engine, customers_csv, settings(), 1)
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(customers_csv.read_text().splitlines()[:11]) + "\n")
    assert import_file(engine, partial, settings(export_mode="incremental"), 1).rows_deactivated == 0
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(*) from segmentation_internal.customers where is_active")).scalar() == 300


def test_a_refused_file_leaves_customers_exactly_as_they_were(engine, customers_csv):
    import_file(engine, customers_csv, settings(), 1)
    with engine.connect() as connection:
        before = connection.execute(sa.text("select * from segmentation_internal.customers order by customer_id")).all()
    with pytest.raises(ImportRefused):
        import_file(engine, DEFECTS / "missing_column.csv", settings(export_mode="full"), 1)
    with engine.connect() as connection:
        after = connection.execute(sa.text("select * from segmentation_internal.customers order by customer_id")).all()
    assert before == after


def test_the_injection_attempt_is_just_a_rejected_line(engine):
    import_file(engine, DEFECTS / "sql_injection.csv", settings(), 1)
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(*) from segmentation_internal.customers")).scalar() == 1


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
        result = import_file(engine, path, settings(), 1)
    except ImportRefused as refused:  # only a file with no data lines may be refused
        assert "no customer lines" in str(refused)
        return
    row = batch(engine, result.batch_id)
    if any(line.count('"') % 2 for line in lines):  # a quoted field may span lines: fewer records
        assert row.rows_read <= len(lines)
    else:
        assert row.rows_read == len(lines)
    assert row.rows_read == row.rows_inserted + row.rows_updated + row.rows_unchanged + row.rows_rejected
    stored = rejects(engine, result.batch_id)
    assert len(stored) == row.rows_rejected
    assert all(2 <= line <= len(lines) + 1 for line in stored)
    for number, reject in stored.items():  # verbatim: the record's lines from the one it starts on
        spanned = reject.raw_line.count("\n") + 1
        assert reject.raw_line == "\n".join(lines[number - 2:number - 2 + spanned])


def test_first_load_and_merge_store_the_same_customers_and_rejects(engine, tmp_path, monkeypatch):
    """The two load paths and the plain-block and line-by-line readers must agree exactly."""
    from segmentation.ingest import source

    monkeypatch.setattr(source, "BLOCK_BYTES", 256)  # many blocks: some plain, some not
    lines = write_sample(tmp_path / "customers.csv", rows=200, seed=3).read_text().splitlines()  # ids 1..200
    odd = ["301, male ,40,50.5,60", '302,"F","41","0","1"', "303,,,,", "304,Alien,1,1,1", "", "305,Male,1,1",
           "306,Female,121,1,1", "0307,f,007,082.50,099", "308,Male,1,1e2,5", "abc", "309;Male;1;1;1"]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join(lines[:60] + odd + lines[60:]) + "\n")

    def snapshot():
        with engine.connect() as connection:
            customers = connection.execute(sa.text(
                "select customer_id, attributes, dataset_id, is_active"
                " from segmentation_internal.customers where customer_id <> :seeded order by customer_id"
            ), {"seeded": SEEDED_ID}).all()
            stored = connection.execute(sa.text(
                "select line_number, raw_line, reason from segmentation_internal.import_rejects"
                " where batch_id = (select max(batch_id) from segmentation_internal.import_batches) order by line_number"
            )).all()
        return customers, stored

    first = import_file(engine, mixed, settings(), 1)
    loaded = snapshot()
    with engine.begin() as connection:
        connection.execute(sa.text("delete from segmentation_internal.customers"))
    seed_one_customer(engine)
    merged = import_file(engine, mixed, settings(), 1)
    assert (first.method, merged.method) == ("first load", "merge")
    assert (first.rows_read, first.rows_inserted, first.rows_rejected) == (211, 205, 6)
    assert (merged.rows_read, merged.rows_inserted, merged.rows_rejected) == (211, 205, 6)
    assert snapshot() == loaded
    customers, stored = loaded
    assert [row.line_number for row in stored] == [64, 65, 66, 67, 70, 71]  # header = line 1, odd lines from 61
    by_id = {row.customer_id: row for row in customers}
    assert by_id["307"].attributes == ["Female", "7", "082.50", "99"]  # numbers as written, whole numbers plain
    assert by_id["301"].attributes == ["Male", "40", "50.5", "60"]
    assert by_id["303"].attributes == [None, None, None, None]


@pytest.mark.parametrize(("order", "expected"), [("sorted", "merge join"), ("shuffled", "planner's choice")])
def test_the_stage_is_matched_by_merge_join_only_when_both_tables_are_close_to_id_order(
    engine, tmp_path, customers_csv, caplog, order, expected, monkeypatch
):
    import logging
    import random

    from segmentation.ingest import diff

    monkeypatch.setattr(diff, "MAX_CHANGED_SHARE", 0.0)  # any changed line: the whole file is merged

    header, *lines = customers_csv.read_text().splitlines()
    if order == "shuffled":
        random.Random(3).shuffle(lines)
    # sorted: the sample's number order; stored as text ("9" before "10") that breaks text order
    # only where the digits grow, which still counts as close to id order
    path = tmp_path / f"{order}.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    # the file without its first line first: the second file does not start with it (nor compares line by line)
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("\n".join([header, *lines[1:]]) + "\n")
    import_file(engine, earlier, settings(), 1)
    with caplog.at_level(logging.DEBUG, logger="segmentation.ingest"):
        again = import_file(engine, path, settings(), 1)
    assert (again.method, again.rows_unchanged, again.rows_inserted) == ("merge", 299, 1)
    assert expected in caplog.text


@pytest.mark.parametrize("method", ["first load", "merge"])
def test_a_line_lost_between_reader_and_copy_fails_the_import_instead(engine, customers_csv, monkeypatch, method):
    """Defence against our own bugs: the server must take one row per line the reader counted."""
    from segmentation.ingest import records

    if method == "merge":
        seed_one_customer(engine)
    before = customer_count(engine)
    write_records = records._Writer.records

    def drop_first_record(self, first, text):
        return write_records(self, first, text).split("\n", 1)[1]

    monkeypatch.setattr(records._Writer, "records", drop_first_record)
    with pytest.raises(RuntimeError, match=r"300 (valid|read) lines but COPY took 29\d rows"):
        import_file(engine, customers_csv, settings(), 1)
    assert customer_count(engine) == before
    with engine.connect() as connection:
        status = connection.execute(sa.text("select status from segmentation_internal.import_batches")).scalar_one()
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

    from segmentation.ingest import records

    path = tmp_path_factory.mktemp("plain") / "plain.csv"
    path.write_text("CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n" + "\n".join(lines) + "\n")

    def load():
        with engine.begin() as connection:
            connection.execute(sa.text("delete from segmentation_internal.customers"))
        result = import_file(engine, path, settings(), 1)
        with engine.connect() as connection:
            customers = connection.execute(sa.text(
                "select customer_id, attributes from segmentation_internal.customers order by customer_id")).all()
            stored = connection.execute(sa.text(
                "select line_number, raw_line, reason from segmentation_internal.import_rejects where batch_id = :id"
                " order by line_number"), {"id": result.batch_id}).all()
        return (result.rows_inserted, result.rows_rejected), customers, stored

    fast = load()
    with mock.patch.object(records, "plain_line_pattern", lambda *args, **kwargs: None):
        careful = load()
    assert fast == careful


# --- any declared data set -----------------------------------------------------------------

BANK = {
    "id_column": "Client ID",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "unit": "k$", "min": 0},
        "balance": {"from": "Balance", "type": "number", "min": 0, "max": 100000},
        "cards": {"from": "Cards", "type": "whole", "min": 0, "max": 20},
        "student": {"from": "Student", "type": "boolean"},
        "region": {"from": "Region", "type": "category", "values": ["East", "West", "South"]},
    },
}
BANK_HEADER = "Client ID,Income,Balance,Cards,Student,Region,Branch"


def bank_settings(**overrides):
    return settings(dataset=BANK, **overrides)


def write_lines(path, header, lines):
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def stored_customers(engine):
    with engine.connect() as connection:
        return {
            row.customer_id: row
            for row in connection.execute(sa.text(
                "select customer_id, attributes, is_active, dataset_id from segmentation_internal.customers"))
        }


def test_a_declared_export_stores_every_type_and_accounts_for_every_line(engine, tmp_path, caplog):
    import logging

    lines = [
        "C-001,25.50,1200,2,Yes,East,B1",
        '"C-002", +31 ,0.0,"03",no,west,B2',
        "C-003,,,,,,B1",
        "007,1e2,99999.99,20,TRUE,SOUTH,B3",
        "C-005,abc,1,1,yes,East,B1",
        "C-006,1,-3,1,yes,East,B1",
        "C-007,1,1,21,yes,East,B1",
        "C-008,1,1,1,maybe,East,B1",
        "C-009,1,1,1,yes,North,B1",
        "C-010,1,1,1,yes,East",
        ",1,1,1,yes,East,B1",
        "",
    ]
    path = write_lines(tmp_path / "bank.csv", BANK_HEADER, lines)
    with caplog.at_level(logging.INFO, logger="segmentation.ingest"):
        result = import_file(engine, path, bank_settings(), 1)
    assert (result.method, result.rows_read, result.rows_inserted, result.rows_rejected) == ("first load", 12, 4, 8)
    assert result.ignored_columns == ("Branch",) and "'Branch'" in caplog.text
    customers = stored_customers(engine)
    assert customers["C-001"].attributes == ["25.50", "1200", "2", "true", "East"]
    assert customers["C-002"].attributes == ["31", "0.0", "3", "false", "West"]
    assert customers["C-003"].attributes == [None, None, None, None, None]
    assert customers["007"].attributes == ["1e2", "99999.99", "20", "true", "South"]
    with engine.connect() as connection:
        declaration = connection.execute(
            sa.text("select declaration from segmentation_internal.datasets where dataset_id = :id"), {"id": result.dataset_id}
        ).scalar_one()
    assert {row.dataset_id for row in customers.values()} == {result.dataset_id}
    assert [column["name"] for column in declaration["columns"]] == ["income", "balance", "cards", "student", "region"]
    reasons = {line: row.reason for line, row in rejects(engine, result.batch_id).items()}
    assert reasons == {
        6: "income 'abc' is not a number",
        7: "balance '-3' is below its minimum 0",
        8: "cards 21 is outside 0..20",
        9: "student 'maybe' is not yes/no/true/false/1/0",
        10: "region 'North' is not one of East, West, South",
        11: "6 fields, expected 7",
        12: "customer id is empty",
        13: "empty line",
    }
    assert result.reject_share == pytest.approx(8 / 12)
    assert len(result.top_reasons) == 3 and all(count == 1 for _, count in result.top_reasons)
    # the same file again: recognised as the last import's file, nothing changes, the rejects stay
    again = import_file(engine, path, bank_settings(export_mode="incremental"), 1)
    assert (again.method, again.rows_unchanged, again.rows_rejected) == ("unchanged prefix", 4, 8)
    assert again.top_reasons == result.top_reasons
    assert {line: row.reason for line, row in rejects(engine, again.batch_id).items()} == reasons
    assert stored_customers(engine) == customers


def test_text_ids_keep_leading_zeros_and_whole_ids_drop_them(engine, tmp_path):
    text_ids = write_lines(tmp_path / "text.csv", BANK_HEADER,
                           ["007,1,1,1,y,East,B", "7,2,2,2,n,West,B", "0007,3,3,3,1,South,B"])
    result = import_file(engine, text_ids, bank_settings(), 1)
    assert (result.rows_inserted, result.rows_rejected) == (3, 0)
    assert sorted(stored_customers(engine)) == ["0007", "007", "7"]
    with engine.begin() as connection:
        connection.execute(sa.text("delete from segmentation_internal.customers"))
    whole_ids = write_lines(tmp_path / "whole.csv", "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)",
                            ["007,Male,1,1,1", "7,Female,2,2,2"])
    result = import_file(engine, whole_ids, settings(), 1)
    assert (result.rows_inserted, result.rows_rejected) == (1, 1)  # the same customer twice: the later line wins
    assert stored_customers(engine)["7"].attributes == ["Female", "2", "2", "2"]
    assert rejects(engine, result.batch_id)[2].reason == "customer id 7 appears again on line 3, which replaces this line"


@pytest.mark.quick
def test_a_full_export_keeps_a_customer_whose_line_was_rejected_active(engine, tmp_path):
    lines = [f"C-{number:03d},{number},{number},1,no,East,B" for number in range(1, 41)]
    import_file(engine, write_lines(tmp_path / "all.csv", BANK_HEADER, lines), bank_settings(), 1)
    later = lines[:38]  # C-039 and C-040 are gone
    later[0] = "C-001,lots,1,1,no,East,B"  # rejected, but its id is readable
    later[1] = "C-002,1,1,1,no,East"  # wrong number of fields, id still readable
    result = import_file(engine, write_lines(tmp_path / "later.csv", BANK_HEADER, later),
                         bank_settings(export_mode="full", max_reject_share=0.1), 1)
    assert (result.rows_rejected, result.rows_deactivated, result.deactivation_skipped) == (2, 2, False)
    customers = stored_customers(engine)
    assert [cid for cid, row in sorted(customers.items()) if not row.is_active] == ["C-039", "C-040"]
    assert customers["C-001"].is_active and customers["C-001"].attributes == ["1", "1", "1", "false", "East"]
    assert customers["C-002"].is_active


def test_a_full_export_with_too_many_rejects_deactivates_nobody(engine, tmp_path, caplog):
    import logging

    lines = [f"C-{number:03d},{number},{number},1,no,East,B" for number in range(1, 21)]
    import_file(engine, write_lines(tmp_path / "all.csv", BANK_HEADER, lines), bank_settings(), 1)
    later = lines[:10] + [f"C-{number:03d},{number}k,1,1,no,East,B" for number in (11, 12)]  # 2 of 12 rejected
    with caplog.at_level(logging.WARNING, logger="segmentation.ingest"):
        result = import_file(engine, write_lines(tmp_path / "later.csv", BANK_HEADER, later),
                             bank_settings(export_mode="full", max_reject_share=0.05), 1)
    assert (result.rows_rejected, result.rows_deactivated, result.deactivation_skipped) == (2, 0, True)
    assert result.reject_share == pytest.approx(2 / 12)
    assert result.top_reasons == [("income '…' is not a number", 2)]
    assert "marks nobody inactive" in caplog.text and "max_reject_share" in caplog.text
    assert all(row.is_active for row in stored_customers(engine).values())
    assert "nobody marked inactive" in result.summary()
    # the same share within the limit: the missing customers become inactive
    result = import_file(engine, write_lines(tmp_path / "again.csv", BANK_HEADER, later),
                         bank_settings(export_mode="full", max_reject_share=0.2), 1)
    assert (result.rows_deactivated, result.deactivation_skipped) == (8, False)


def test_datasets_are_recorded_once_per_declaration(engine, tmp_path):
    from segmentation.dataset import parse_dataset

    with engine.begin() as connection:
        mall = ensure_dataset(connection, MALL)
        bank = ensure_dataset(connection, parse_dataset(BANK))
        assert ensure_dataset(connection, parse_dataset(BANK)) == bank != mall
        fingerprints = connection.execute(sa.text("select fingerprint from segmentation_internal.datasets")).scalars().all()
    assert sorted(fingerprints) == sorted([MALL.fingerprint(), parse_dataset(BANK).fingerprint()])
    # a customer read under another declaration is a changed customer
    import_file(engine, write_lines(tmp_path / "a.csv", BANK_HEADER, ["C-1,1,1,1,no,East,B"]), bank_settings(), 1)
    other = dict(BANK, columns={**BANK["columns"], "region": {"from": "Region", "type": "category"}})
    result = import_file(engine, write_lines(tmp_path / "b.csv", BANK_HEADER, ["C-1,1,1,1,no,East,B"]),
                         settings(dataset=other), 1)
    assert (result.rows_updated, result.rows_unchanged) == (1, 0)
    assert stored_customers(engine)["C-1"].dataset_id == result.dataset_id != bank


EVERY_TYPE = {
    "id_column": "Client",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "min": 0},
        "ratio": {"from": "Ratio", "type": "number", "min": -0.5, "max": 2.25},
        "delta": {"from": "Delta", "type": "number"},
        "age": {"from": "Age", "type": "whole", "min": 0, "max": 120},
        "offset": {"from": "Offset", "type": "whole"},
        "region": {"from": "Region", "type": "category", "values": ["East", "West"]},
        "code": {"from": "Code", "type": "category"},
        "student": {"from": "Student", "type": "boolean"},
    },
}
EVERY_TYPE_HEADER = "Client,Income,Ratio,Delta,Age,Offset,Region,Code,Student"
ANY_FIELD = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"), max_size=8),
    st.sampled_from(["", "0", "-0", "007", "+5", "1e2", "5.", ".5", "-1e-999", "1" * 70, "9" * 20, "Yes", "n",
                     "east", "WEST", "null", "NULL", '"x"', '""', "'a'", "{a}", "a\\b", "a b", " a ", "\x00",
                     "x" * 201, "C-1", "C-2", "1.5", "2.25", "-0.5",
                     # values that broke importers: doubled signs, endless digits, overflow, underflow
                     "--5", "-+5", "9" * 5000, "0" * 5000 + "5", "1." + "0" * 20000, "1e999", "-1e999", "1e15",
                     "-1e-300", "1e-99999", "0e-99999", "1" * 31, "0x1F", "a\x00b", "５"]),
)
VALID_FIELDS = (
    st.sampled_from(["C-1", "C-2", "007", "7", "x y"]), st.sampled_from(["0", "1.5", "12", ""]),
    st.sampled_from(["-0.5", "0", "2.25", "1"]), st.sampled_from(["-3", "4.5", "1e3", ""]),
    st.sampled_from(["0", "30", "120", ""]), st.sampled_from(["-7", "0", "8", ""]),
    st.sampled_from(["East", "west", ""]), st.sampled_from(["Gold", "a b", "", "0001"]),
    st.sampled_from(["yes", "N", "true", "0", ""]),
)


@st.composite
def every_type_line(draw):
    fields = [draw(valid) for valid in VALID_FIELDS]
    for index in draw(st.lists(st.integers(0, len(fields) - 1), max_size=2)):
        fields[index] = draw(ANY_FIELD)
    return ",".join(fields)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(every_type_line(), min_size=1, max_size=30))
def test_any_text_in_any_field_loads_or_is_rejected_and_both_paths_store_the_same(engine, tmp_path_factory, lines):
    """Arbitrary text in every field of every column type: the import never fails, every line is
    accounted for, and the fast path stores exactly what the line-by-line path stores."""
    from unittest import mock

    from segmentation.ingest import records

    path = write_lines(tmp_path_factory.mktemp("any") / "any.csv", EVERY_TYPE_HEADER, lines)

    def load():
        with engine.begin() as connection:
            connection.execute(sa.text("delete from segmentation_internal.customers"))
        result = import_file(engine, path, settings(dataset=EVERY_TYPE), 1)
        if any(line.count('"') % 2 for line in lines):  # a quoted field may span lines: fewer records
            assert result.rows_read <= len(lines)
        else:
            assert result.rows_read == len(lines)
        assert result.rows_read == result.rows_inserted + result.rows_rejected
        with engine.connect() as connection:
            customers = connection.execute(sa.text(
                "select customer_id, attributes from segmentation_internal.customers order by customer_id")).all()
            stored = connection.execute(sa.text(
                "select line_number, raw_line, reason from segmentation_internal.import_rejects where batch_id = :id"
                " order by line_number"), {"id": result.batch_id}).all()
        assert len(stored) == result.rows_rejected
        again = import_file(engine, path, settings(dataset=EVERY_TYPE), 1)  # the stage's text matches the stored rows'
        assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, result.rows_inserted)
        return (result.rows_inserted, result.rows_rejected), customers, stored

    fast = load()
    with mock.patch.object(records, "plain_line_pattern", lambda *args, **kwargs: None):
        careful = load()
    assert fast == careful
    for _, attributes in fast[1]:  # what the views (numeric) and the fit (float8) make of the text never fails
        with engine.connect() as connection:
            connection.execute(
                sa.text("select cast(:a as numeric), cast(:b as numeric), cast(:c as numeric), cast(:d as bigint),"
                        " cast(:e as bigint), cast(:f as boolean), cast(:a as float8), cast(:b as float8),"
                        " cast(:c as float8)"),
                dict(zip("abcdef", [*attributes[:5], attributes[7]])),
            )


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
                                 st.sampled_from(["", "NULL", "null", "nUlL", "a b", " ", "\t", "\x0b", "\x0c", "{", "}",
                                                  ",", '"', "\\", "\u00a0", "\u2003", "x\ny", "\r"])),
                       min_size=1, max_size=6))
def test_the_stage_writes_attributes_as_postgresql_prints_them(engine, values):
    """A re-import compares the staged text with the stored array printed as text: equal only
    if `array_literal` spells every content exactly as PostgreSQL's array output does."""
    from segmentation.ingest import plain

    literal = plain.array_literal(tuple(values))
    with engine.connect() as connection:
        stored, printed = connection.execute(
            sa.text("select cast(:literal as text[]), cast(cast(:literal as text[]) as text)"), {"literal": literal}
        ).one()
    assert (stored, printed) == (values, literal)
