"""Re-importing a file that starts with the last import's file: only the tail is read, and the
result is exactly what reading the whole file stores (compared against a second database where
every import reads the whole file)."""

import contextlib

import pytest
import sqlalchemy as sa

from segmentation import db
from segmentation.errors import ImportRefused
from segmentation.ingest import import_file
from segmentation.orders import OrdersSpec
from segmentation.orders.ingest import import_orders
from segmentation.settings import load_settings
from tests.conftest import _fresh_database

CUSTOMERS = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n" + "".join(
    f"{n},{'Male' if n % 2 else 'Female'},{20 + n % 50},{10 + n},{1 + n % 99}\n" for n in range(1, 41)
) + "41,Male,abc,10,10\n42,Female,30,20,500\n"  # two rejects: age, spending score
ORDERS = """CustomerID,OrderDate,Amount
1,2024-01-01,100
1,2024-03-01,50
1,2024-03-01,50
2,2023-06-30,200
2,2023-07-05,-200
3,2024-02-30,10
4,2024-02-10,30
"""
ORDERS_WITH_IDS = "InvoiceNo,CustomerID,InvoiceDate,Revenue\n" + "".join(
    f"{100 + n // 2},{1 + n % 5},2024-01-{1 + n % 28:02d},{n}.5\n" for n in range(30)
)


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", **overrides)


@pytest.fixture
def whole_engine(server_url, template_database):
    """A second database, where every import reads the whole file."""
    with _fresh_database(server_url, template_database) as url:
        engine = db.make_engine(url)
        yield engine
        engine.dispose()


@contextlib.contextmanager
def whole_file(monkeypatch):
    """Imports inside read the whole file (no prefix is ever recognised, no kept file compared)."""
    with monkeypatch.context() as patch:
        patch.setattr("segmentation.ingest.load.match", lambda *_: None)
        patch.setattr("segmentation.orders.ingest.match", lambda *_: None)
        patch.setattr("segmentation.ingest.load._changed_load", lambda *_: (None, None, None))
        yield


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def stored(engine):
    """Customers, orders and rejects as comparable rows (no timestamps)."""
    with engine.connect() as connection:
        return {
            "customers": connection.execute(sa.text(
                "select customer_id, attributes, is_active, dataset_id, first_batch_id, last_batch_id"
                " from segmentation_internal.customers order by customer_id")).all(),
            "orders": connection.execute(sa.text(
                "select customer_id, order_id, ordered_at, amount, quantity, unit_price, batch_id"
                " from segmentation_internal.orders order by 1, 2, 3, 4, 5, 6, 7")).all(),
            "rejects": connection.execute(sa.text(
                "select batch_id, line_number, raw_line, reason from segmentation_internal.import_rejects"
                " order by 1, 2")).all(),
        }


COUNTS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected", "rows_deactivated",
          "rows_removed", "deactivation_skipped", "top_reasons")


def counts(result):
    return tuple(getattr(result, name, None) for name in COUNTS)


def both(engine, whole_engine, monkeypatch, imports):
    """Run each import (a function of an engine) on `engine` and, reading whole files, on
    `whole_engine`; check that both store the same after each. Returns the first's results."""
    results = []
    for run in imports:
        result = run(engine)
        with whole_file(monkeypatch):
            expected = run(whole_engine)
        assert counts(result) == counts(expected)
        assert stored(engine) == stored(whole_engine)
        results.append(result)
    return results


def customers(path, **overrides):
    return lambda engine: import_file(engine, path, settings(**overrides), 1)


def orders(path, spec=OrdersSpec()):
    return lambda engine: import_orders(engine, path, spec, "whole", 1)


def test_the_same_customer_file_again_is_recognised_and_changes_nothing(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    first = import_file(engine, path, settings(), 1)
    before = stored(engine)
    with engine.connect() as connection:
        updated = connection.execute(sa.text("select max(updated_at) from segmentation_internal.customers")).scalar()
    again = import_file(engine, path, settings(), 1)
    assert (again.method, again.rows_read, again.rows_unchanged, again.rows_rejected) == ("unchanged prefix", 42, 40, 2)
    assert again.rows_inserted + again.rows_updated + again.rows_deactivated == 0
    assert again.top_reasons == first.top_reasons
    after = stored(engine)
    assert after["customers"] == before["customers"]
    with engine.connect() as connection:
        assert connection.execute(sa.text("select max(updated_at) from segmentation_internal.customers")).scalar() == updated
    # the rejects again, under the new batch, with their line numbers, raw text and reasons
    assert [row[1:] for row in after["rejects"] if row[0] == again.batch_id] == [
        row[1:] for row in before["rejects"] if row[0] == first.batch_id]
    assert [row[1] for row in after["rejects"] if row[0] == again.batch_id] == [42, 43]
    assert "unchanged prefix" in again.summary()
    import_file(whole_engine, path, settings(), 1)
    with whole_file(monkeypatch):
        whole = import_file(whole_engine, path, settings(), 1)
    assert whole.method == "merge" and counts(whole) == counts(again) and stored(whole_engine) == after


def test_customers_appended_at_the_end_are_inserted_and_only_they_are_read(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    tail = "43,Female,33,50,50\n44,Male,,51,51\n45,Male,200,1,1\n46,Female,40,60,60\n46,Female,41,61,61\n"
    grown = write(tmp_path, CUSTOMERS + tail, "grown.csv")
    _, result = both(engine, whole_engine, monkeypatch, [customers(path), customers(grown)])
    assert result.method == "unchanged prefix"
    # 44 has no age (stored empty), 45 is too old, the first line of 46 is replaced by the next
    assert (result.rows_read, result.rows_inserted, result.rows_unchanged, result.rows_rejected) == (47, 3, 40, 4)
    reasons = {row.line_number: row.reason for row in stored(engine)["rejects"] if row.batch_id == result.batch_id}
    assert set(reasons) == {42, 43, 46, 47}
    assert reasons[47] == "customer id 46 appears again on line 48, which replaces this line"
    # and a third night: the grown file with more appended starts with the grown file
    third = write(tmp_path, CUSTOMERS + tail + "47,Male,30,30,30\n", "third.csv")
    (last,) = both(engine, whole_engine, monkeypatch, [customers(third)])
    assert (last.method, last.rows_inserted, last.rows_unchanged) == ("unchanged prefix", 1, 43)


def test_a_tail_line_that_replaces_a_prefix_line_falls_back_to_the_whole_file(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    grown = write(tmp_path, CUSTOMERS + "43,Male,30,30,30\n7,Female,99,99,99\n", "grown.csv")
    _, result = both(engine, whole_engine, monkeypatch, [customers(path), customers(grown)])
    assert (result.method, result.rows_inserted, result.rows_updated, result.rows_rejected) == ("merge", 1, 1, 3)


def test_a_file_that_differs_inside_the_prefix_is_not_read_as_a_tail(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    changed = write(tmp_path, CUSTOMERS.replace("\n5,Male,25,15,6\n", "\n5,Male,26,15,6\n") + "43,Male,1,1,1\n",
                    "changed.csv")
    assert changed.read_text() != CUSTOMERS + "43,Male,1,1,1\n"
    _, result = both(engine, whole_engine, monkeypatch, [customers(path), customers(changed)])
    # its changed lines are read (compared with the kept last file), never the tail alone
    assert (result.method, result.rows_inserted, result.rows_updated) == ("changed lines", 1, 1)


def test_a_changed_declaration_reads_the_whole_file(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    grown = write(tmp_path, CUSTOMERS + "43,Male,30,30,30\n", "grown.csv")
    # the same columns, but ages up to 20 only: lines of the prefix are now rejected
    young = {"id_column": "CustomerID", "columns": {
        "gender": {"from": "Gender", "type": "category", "values": ["Female", "Male"]},
        "age": {"from": "Age", "type": "whole", "min": 0, "max": 20},
        "annual_income_k": {"from": "Annual Income (k$)", "type": "number", "min": 0},
        "spending_score": {"from": "Spending Score (1-100)", "type": "whole", "min": 1, "max": 100},
    }}
    _, result = both(engine, whole_engine, monkeypatch, [customers(path), customers(grown, dataset=young)])
    assert result.method == "merge" and result.rows_rejected > 2


def test_a_full_export_after_an_incremental_one_still_deactivates_who_is_missing(
    engine, whole_engine, tmp_path, monkeypatch
):
    other = write(tmp_path, "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n999,Male,30,30,30\n",
                  "other.csv")
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    grown = write(tmp_path, CUSTOMERS + "43,Male,30,30,30\n", "grown.csv")
    *_, result = both(engine, whole_engine, monkeypatch, [
        customers(other), customers(path, export_mode="incremental"), customers(grown, export_mode="full")])
    assert (result.method, result.rows_deactivated) == ("merge", 1)
    # a full export after a full export that deactivated: nobody else can be missing
    (again,) = both(engine, whole_engine, monkeypatch, [customers(write(tmp_path, CUSTOMERS + "43,Male,30,30,30\n44,Male,1,1,1\n",
                                                                        "again.csv"), export_mode="full")])
    assert (again.method, again.rows_inserted, again.rows_deactivated) == ("unchanged prefix", 1, 0)


def test_a_prefix_ending_in_an_open_quote_is_not_reused(engine, whole_engine, tmp_path, monkeypatch):
    open_quote = CUSTOMERS + '43,"Male,30,30,30\n'
    path = write(tmp_path, open_quote, "open.csv")
    closed = write(tmp_path, open_quote + '44",Male,1,1,1\n', "closed.csv")
    _, result = both(engine, whole_engine, monkeypatch, [customers(path), customers(closed)])
    assert result.method == "merge"


def refuse_the_tail(monkeypatch, where):
    """Make the tail's load fail at `where` (a name the tail load calls), as a server error would."""
    def refuse(*args, **kwargs):
        raise ImportRefused("bad.csv: refused while loading its tail")

    monkeypatch.setattr(where, refuse)


def test_a_refused_tail_refuses_the_file_and_leaves_the_table_as_it_was(engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    import_file(engine, path, settings(), 1)
    before = stored(engine)
    bad = write(tmp_path, CUSTOMERS + "43,Male,30,30,30\n", "bad.csv")
    with monkeypatch.context() as patch, pytest.raises(ImportRefused, match="refused while loading its tail"):
        refuse_the_tail(patch, "segmentation.ingest.merge._merge")
        import_file(engine, bad, settings(), 1)
    assert stored(engine) == before
    # and the next import still starts from the last succeeded batch
    again = import_file(engine, write(tmp_path, CUSTOMERS + "43,Male,30,30,30\n", "good.csv"), settings(), 1)
    assert (again.method, again.rows_inserted) == ("unchanged prefix", 1)


def test_a_missing_file_after_an_import_is_refused_as_missing(engine, tmp_path):
    import_file(engine, write(tmp_path, CUSTOMERS, "customers.csv"), settings(), 1)
    with pytest.raises(ImportRefused, match="no such file"):
        import_file(engine, tmp_path / "missing.csv", settings(), 1)
    import_orders(engine, write(tmp_path, ORDERS, "orders.csv"), OrdersSpec(), "whole", 1)
    with pytest.raises(ImportRefused, match="no such file"):
        import_orders(engine, tmp_path / "missing.csv", OrdersSpec(), "whole", 1)


def test_a_change_by_anyone_else_makes_the_next_import_read_the_whole_file(engine, tmp_path):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    import_file(engine, path, settings(), 1)
    with engine.begin() as connection:
        connection.execute(sa.text("update segmentation_internal.customers set is_active = false where customer_id = '3'"))
    again = import_file(engine, path, settings(), 1)
    assert (again.method, again.rows_updated) == ("merge", 1)


def test_the_same_order_log_again_is_recognised_and_keeps_its_rejects(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, ORDERS, "orders.csv")
    first, again = both(engine, whole_engine, monkeypatch, [orders(path), orders(path)])
    assert (again.method, again.rows_read, again.rows_unchanged, again.rows_rejected) == ("unchanged prefix", 7, 6, 1)
    rejects = [row for row in stored(engine)["rejects"] if row.batch_id == again.batch_id]
    assert [(row.line_number, row.raw_line) for row in rejects] == [(7, "3,2024-02-30,10")]
    assert again.top_reasons == first.top_reasons


def test_identical_order_lines_across_prefix_and_tail_go_on_numbering_from_the_stored_ones(
    engine, whole_engine, tmp_path, monkeypatch
):
    path = write(tmp_path, ORDERS, "orders.csv")
    # a third identical line of customer 1 (no order ids: it is a new order), a repeat of a
    # rejected line, a new customer, and the third line twice more in a later night
    grown = write(tmp_path, ORDERS + "1,2024-03-01,50\n3,2024-02-30,10\n5,2024-03-02,7\n", "grown.csv")
    third = write(tmp_path, grown.read_text() + "1,2024-03-01,50\n1,2024-03-01,50\n", "third.csv")
    _, second, last = both(engine, whole_engine, monkeypatch, [orders(path), orders(grown), orders(third)])
    assert (second.method, second.rows_inserted, second.rows_unchanged, second.rows_rejected) == (
        "unchanged prefix", 2, 6, 2)
    assert (last.method, last.rows_inserted, last.rows_unchanged) == ("unchanged prefix", 2, 8)
    with engine.connect() as connection:
        assert connection.execute(sa.text(
            "select count(*) from segmentation_internal.orders where customer_id = '1' and amount = 50")).scalar() == 5


def test_a_tail_that_names_a_stored_order_again_stores_what_the_whole_file_would(
    engine, whole_engine, tmp_path, monkeypatch
):
    path = write(tmp_path, ORDERS_WITH_IDS, "orders.csv")
    # order 100 gets a third line, order 200 is new
    grown = write(tmp_path, ORDERS_WITH_IDS + "100,1,2024-01-05,3.5\n200,2,2024-02-01,9\n", "grown.csv")
    _, result = both(engine, whole_engine, monkeypatch, [orders(path), orders(grown)])
    assert (result.method, result.rows_inserted, result.rows_removed) == ("unchanged prefix", 2, 0)


def test_a_tail_line_that_repeats_a_line_of_the_prefix_is_rejected_as_the_whole_file_would(
    engine, whole_engine, tmp_path, monkeypatch
):
    path = write(tmp_path, ORDERS_WITH_IDS, "orders.csv")
    # order 101 gets a line identical to its line 4 (exported twice), order 200 is new
    grown = write(tmp_path, ORDERS_WITH_IDS + "101,3,2024-01-03,2.5\n200,2,2024-02-01,9\n", "grown.csv")
    _, result = both(engine, whole_engine, monkeypatch, [orders(path), orders(grown)])
    assert (result.method, result.rows_inserted, result.rows_rejected) == ("merge", 1, 1)
    assert stored(engine)["rejects"][-1][1:] == (
        32, "101,3,2024-01-03,2.5", "repeats line 4 exactly (an order line exported twice): counted once")


def test_orders_the_table_holds_beyond_the_last_file_make_the_next_import_read_the_whole_file(
    engine, whole_engine, tmp_path, monkeypatch
):
    older = write(tmp_path, "CustomerID,OrderDate,Amount\n1,2023-12-31,100\n", "older.csv")
    path = write(tmp_path, ORDERS, "orders.csv")
    # the tail repeats the older file's line: already stored, so it is not new
    grown = write(tmp_path, ORDERS + "1,2023-12-31,100\n", "grown.csv")
    *_, result = both(engine, whole_engine, monkeypatch, [orders(older), orders(path), orders(grown)])
    assert (result.method, result.rows_inserted) == ("merge", 0)


def test_an_order_log_with_quantity_and_unit_price_stages_its_tail(engine, whole_engine, tmp_path, monkeypatch):
    text = "CustomerID,InvoiceDate,Quantity,UnitPrice\n1,2024-01-01,2,5\n2,2024-01-02,1,10\n2,2024-01-02,x,10\n"
    path = write(tmp_path, text, "orders.csv")
    grown = write(tmp_path, text + "1,2024-01-01,2,5\n3,2024-01-03,3,1.5\n", "grown.csv")
    _, result = both(engine, whole_engine, monkeypatch, [orders(path), orders(grown)])
    assert (result.method, result.rows_inserted, result.rows_rejected) == ("unchanged prefix", 2, 1)


def test_an_order_log_that_differs_inside_the_prefix_is_read_whole(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, ORDERS, "orders.csv")
    changed = write(tmp_path, ORDERS.replace("4,2024-02-10,30", "4,2024-02-10,31") + "5,2024-03-02,7\n", "changed.csv")
    _, result = both(engine, whole_engine, monkeypatch, [orders(path), orders(changed)])
    assert (result.method, result.rows_inserted) == ("merge", 2)


def test_a_changed_order_declaration_reads_the_whole_file(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, ORDERS, "orders.csv")
    grown = write(tmp_path, ORDERS + "5,2024-03-02,7\n", "grown.csv")
    iso = OrdersSpec(date_format="%Y-%m-%d")
    _, result = both(engine, whole_engine, monkeypatch, [orders(path), orders(grown, iso)])
    assert (result.method, result.rows_inserted) == ("merge", 1)


def test_a_refused_order_tail_leaves_the_orders_as_they_were(engine, tmp_path, monkeypatch):
    path = write(tmp_path, ORDERS, "orders.csv")
    import_orders(engine, path, OrdersSpec(), "whole", 1)
    before = stored(engine)
    with monkeypatch.context() as patch, pytest.raises(ImportRefused):
        refuse_the_tail(patch, "segmentation.orders.ingest.copy_rejects")
        import_orders(engine, write(tmp_path, ORDERS + "5,2024-03-02,7\n", "bad.csv"), OrdersSpec(), "whole", 1)
    assert stored(engine) == before


def test_a_tail_line_of_an_inactive_customer_makes_it_active_again(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, CUSTOMERS, "customers.csv")
    without = write(tmp_path, CUSTOMERS.replace("\n40,Female,60,50,41\n", "\n"), "without.csv")
    back = write(tmp_path, without.read_text() + "40,Female,61,50,41\n", "back.csv")
    _, gone, result = both(engine, whole_engine, monkeypatch, [
        customers(path, export_mode="full"), customers(without, export_mode="full"), customers(back, export_mode="full")])
    assert (gone.method, gone.rows_deactivated) == ("changed lines", 1)
    assert (result.method, result.rows_updated, result.rows_inserted, result.rows_deactivated) == (
        "unchanged prefix", 1, 0, 0)
