"""Order logs on PostgreSQL: the import's accounting, idempotence and refusal, and RFM known by hand."""

import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from segmentation import features
from segmentation.errors import ImportRefused
from segmentation.features import staging
from segmentation.ingest import import_file
from segmentation.orders import OrdersSpec, rfm
from segmentation.orders.ingest import import_orders
from segmentation.pipeline import run_once
from segmentation.settings import load_settings

# Hand-made: customer 1 has two orders on one day (no order ids: each line is an order),
# customer 2 returned its only purchase, customer 3 ordered last (as_of = 2024-03-16).
LOG = """CustomerID,OrderDate,Amount
1,2024-01-01,100
1,2024-03-01,50
1,2024-03-01,50
2,2023-06-30,200
2,2023-07-05,-200
3,20240315,10
4,2024-02-10,30
5,2022-01-01,1000
"""
AS_OF = datetime.date(2024, 3, 16)


def write(tmp_path, text, name="orders.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def query(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def rfm_rows(engine, as_of=None):
    with engine.begin() as connection:
        rfm.reference_date(connection, as_of, 1)
        rows = connection.execute(sa.text("select * from segmentation.customer_rfm order by customer_id")).mappings().all()
    return {row["customer_id"]: dict(row) for row in rows}


@pytest.mark.quick
def test_recency_frequency_and_monetary_value_match_the_hand_computed_answers(engine, tmp_path):
    import_orders(engine, write(tmp_path, LOG), OrdersSpec(), "whole", 1)
    rows = rfm_rows(engine)
    assert set(rows) == {1, 2, 3, 4, 5}  # a whole number, as in every view of the segmentation
    assert all(row["as_of"] == AS_OF for row in rows.values())  # the day after the latest order
    first = rows[1]
    assert (first["recency_days"], first["frequency"], first["monetary"]) == (15, 3, Decimal("200"))
    assert first["average_order_value"] == Decimal("66.67")
    assert first["tenure_days"] == (AS_OF - datetime.date(2024, 1, 1)).days
    returned = rows[2]  # the return counts against monetary value, not as an order or as recency
    assert (returned["recency_days"], returned["frequency"], returned["monetary"]) == (
        (AS_OF - datetime.date(2023, 6, 30)).days, 1, Decimal("0"))
    assert rows[3]["recency_days"] == 1
    # quintiles over five customers by hand: recency 1 < 15 < 35 < 260 < 805 days,
    # monetary 0 < 10 < 30 < 200 < 1000, frequency 1,1,1,1 (tied: lowest score) and 3
    assert {key: row["r_score"] for key, row in rows.items()} == {5: 1, 2: 2, 4: 3, 1: 4, 3: 5}
    assert {key: row["m_score"] for key, row in rows.items()} == {2: 1, 3: 2, 4: 3, 1: 4, 5: 5}
    assert {key: row["f_score"] for key, row in rows.items()} == {1: 5, 2: 1, 3: 1, 4: 1, 5: 1}


def test_an_as_of_date_counts_only_earlier_orders_and_measures_to_it(engine, tmp_path):
    import_orders(engine, write(tmp_path, LOG), OrdersSpec(), "whole", 1)
    rows = rfm_rows(engine, datetime.date(2024, 3, 1))
    assert "3" not in rows  # its only order is later
    assert (rows[1]["recency_days"], rows[1]["frequency"], rows[1]["monetary"]) == (60, 1, Decimal("100"))
    assert rows[4]["recency_days"] == 20


def test_lines_of_one_order_id_are_one_order(engine, tmp_path):
    text = "InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice\nA1,7,2024-05-01 10:00,2,1.25\nA1,7,2024-05-01 10:00,1,4\nA2,7,2024-05-03,1,1\n"
    result = import_orders(engine, write(tmp_path, text), OrdersSpec(), "whole", 1)
    assert result.rows_inserted == 3
    row = rfm_rows(engine)[7]
    assert (row["frequency"], row["monetary"]) == (2, Decimal("7.50"))  # 2 x 1.25 + 4 + 1


def test_every_line_is_accounted_for_and_rejects_keep_their_line_and_reason(engine, tmp_path):
    text = LOG + "6,2024-02-30,5\n7,2024-01-01,abc\n,2024-01-01,5\n8,2024-01-01,\n"
    result = import_orders(engine, write(tmp_path, text), OrdersSpec(), "whole", 1)
    assert (result.rows_read, result.rows_inserted, result.rows_rejected) == (12, 8, 4)
    rejects = query(engine, "select line_number, reason from segmentation_internal.import_rejects order by line_number")
    assert [line for line, _ in rejects] == [10, 11, 12, 13]
    assert "is not a date" in rejects[0][1] and "is not a number" in rejects[1][1]
    assert rejects[2][1] == "customer id is empty" and rejects[3][1] == "amount is empty"
    batch = query(engine, "select kind, rows_read, rows_inserted + rows_unchanged + rows_rejected from segmentation_internal.import_batches")
    assert batch == [("orders", 12, 12)]


def test_quoted_and_spaced_lines_store_what_plain_lines_store(engine, tmp_path):
    plain = import_orders(engine, write(tmp_path, LOG), OrdersSpec(), "whole", 1)
    spaced = LOG.replace("1,2024-01-01,100", '"0001", 2024-01-01 ,"100"')
    again = import_orders(engine, write(tmp_path, spaced, "spaced.csv"), OrdersSpec(), "whole", 1)
    assert plain.rows_inserted == 8 and (again.rows_inserted, again.rows_unchanged) == (0, 8)


def test_importing_the_same_file_again_changes_nothing_and_new_lines_are_added(engine, tmp_path):
    path = write(tmp_path, LOG)
    import_orders(engine, path, OrdersSpec(), "whole", 1)
    before = query(engine, "select customer_id, ordered_at, amount from segmentation_internal.orders order by 1, 2, 3")
    again = import_orders(engine, path, OrdersSpec(), "whole", 1)
    assert (again.rows_inserted, again.rows_unchanged, again.rows_removed) == (0, 8, 0)
    assert query(engine, "select customer_id, ordered_at, amount from segmentation_internal.orders order by 1, 2, 3") == before
    # a third identical line of customer 1 on 2024-03-01 is a new order: position 3 among identical lines
    grown = import_orders(engine, write(tmp_path, LOG + "1,2024-03-01,50\n", "grown.csv"), OrdersSpec(), "whole", 1)
    assert (grown.rows_inserted, grown.rows_unchanged) == (1, 8)
    assert rfm_rows(engine)[1]["frequency"] == 4


def test_lines_appended_or_inserted_anywhere_are_added_once_and_the_stored_ones_left_alone(engine, tmp_path):
    header = "InvoiceNo,CustomerID,InvoiceDate,Revenue\n"
    lines = [f"{100 + n},{1 + n % 7},2024-01-{1 + n % 28:02d},{n}.50\n" for n in range(40)]
    import_orders(engine, write(tmp_path, header + "".join(lines)), OrdersSpec(), "whole", 1)
    before = query(engine, "select order_id, customer_id, ordered_at, amount, batch_id from segmentation_internal.orders")
    # yesterday's lines in another order and spelling (quotes, leading and trailing zeros), one
    # new order in the middle, two at the end and a bad line: only those three are new
    grown = [lines[0].replace("100,", '"100",'), *reversed(lines[1:20]), "500,3,2024-02-01,5\n", *lines[20:],
             "501,9,2024-02-02,6\n", "503,4,2024-02-30,5\n", "502,3,2024-02-03,-6\n"]
    grown[5] = grown[5].replace(".50", ".500")
    grown[7] = grown[7].replace(",", ",00", 1)
    result = import_orders(engine, write(tmp_path, header + "".join(grown), "grown.csv"), OrdersSpec(), "whole", 1)
    assert (result.rows_read, result.rows_inserted, result.rows_unchanged, result.rows_rejected) == (44, 3, 40, 1)
    assert result.rows_removed == 0
    assert query(engine, "select line_number, raw_line from segmentation_internal.import_rejects") == [
        (44, "503,4,2024-02-30,5")]
    after = query(engine, "select order_id, customer_id, ordered_at, amount, batch_id from segmentation_internal.orders")
    assert sorted(after) == sorted(before + [row for row in after if row[4] == result.batch_id])
    assert sorted(row[0] for row in after if row[4] == result.batch_id) == ["500", "501", "502"]


def test_a_file_that_restates_an_order_replaces_its_lines(engine, tmp_path):
    first = "order_id,customer_id,date,amount\nA,1,2024-01-01,10\nA,1,2024-01-01,5\nB,2,2024-01-02,7\n"
    import_orders(engine, write(tmp_path, first), OrdersSpec(), "whole", 1)
    corrected = "order_id,customer_id,date,amount\nA,1,2024-01-01,10\n"  # line of 5 cancelled from order A
    result = import_orders(engine, write(tmp_path, corrected, "corrected.csv"), OrdersSpec(), "whole", 1)
    assert (result.rows_inserted, result.rows_unchanged, result.rows_removed) == (0, 1, 1)
    assert query(engine, "select order_id, amount from segmentation_internal.orders order by 1, 2") == [("A", 10), ("B", 7)]


def test_a_refused_file_leaves_the_orders_as_they_were(engine, tmp_path):
    import_orders(engine, write(tmp_path, LOG), OrdersSpec(), "whole", 1)
    with pytest.raises(ImportRefused, match="no column for date"):
        import_orders(engine, write(tmp_path, "CustomerID,Amount\n1,5\n", "bad.csv"), OrdersSpec(), "whole", 1)
    latin = tmp_path / "latin.csv"  # a byte that is not UTF-8 rejects its line only, naming the setting
    latin.write_bytes(LOG.encode() + b"9,2024-01-01,\xe9\n")
    result = import_orders(engine, latin, OrdersSpec(), "whole", 1)
    assert (result.rows_unchanged, result.rows_rejected) == (8, 1)
    assert "holds the byte 0xe9 that is not utf-8 text" in query(
        engine, "select reason from segmentation_internal.import_rejects where batch_id = :b", b=result.batch_id)[0][0]
    assert query(engine, "select count(*) from segmentation_internal.orders") == [(8,)]
    assert query(engine, "select status from segmentation_internal.import_batches order by batch_id") == [
        ("succeeded",), ("failed",), ("succeeded",)]


def test_a_date_format_reads_other_spellings(engine, tmp_path):
    text = "Customer,Purchase day,Total ($)\n1,31/12/2023,5\n1,01/01/2024,5\n"
    spec = OrdersSpec(customer_id="Customer", date="Purchase day", amount="Total ($)", date_format="%d/%m/%Y")
    result = import_orders(engine, write(tmp_path, text), spec, "whole", 1)
    assert result.rows_inserted == 2
    assert rfm_rows(engine)[1]["tenure_days"] == 2


def test_attributes_and_orders_are_joined_and_the_unmatched_counted(engine, tmp_path):
    settings = load_settings(
        database_url="postgresql://unused@localhost/unused", write_report=False, orders={},
        dataset={"id_column": "CustomerID", "columns": {"income": {"from": "Income", "type": "number"}}},
    )
    import_file(engine, write(tmp_path, "CustomerID,Income\n1,10\n3,30\n99,99\n", "customers.csv"),
                settings.for_customer_import(), 1)
    import_orders(engine, write(tmp_path, LOG), OrdersSpec(), "whole", 1)
    from segmentation.ingest import ensure_dataset

    with engine.begin() as connection:
        dataset_id = ensure_dataset(connection, settings.declaration.imported())
        read = rfm.stage_customers(connection, settings.declaration, dataset_id, None, run_id=1, segmentation_id=1)
        frame = features.read_customers(connection, settings.declaration, staging.relation(1)).set_index("customer_id")
        connection.rollback()
    assert list(frame.index) == ["1", "2", "3", "4", "5", "99"]
    assert (read.n_customers, read.orders_without_attributes, read.attributes_without_orders) == (6, 3, 1)
    assert frame.loc["99", "frequency"] == "0" and frame.loc["99", "recency_days"] is None
    assert frame.loc["2", "income"] is None and frame.loc["1", "income"] == "10"


def test_a_run_on_orders_records_its_reference_date(engine, tmp_path):
    rows = ["CustomerID,OrderDate,Amount"]
    for customer in range(1, 61):  # recent frequent buyers and lapsed one-timers
        if customer % 2:
            rows += [f"{customer},2024-03-{day:02d},{80 + customer}" for day in range(1, 9)]
        else:
            rows.append(f"{customer},2022-0{1 + customer % 9}-15,{5 + customer % 7}")
    settings = load_settings(database_url="postgresql://unused@localhost/unused", write_report=False,
                             as_of=datetime.date(2024, 4, 1), k=2)
    outcome = run_once(engine, settings, orders_path=write(tmp_path, "\n".join(rows) + "\n"))
    assert outcome.status == "published"
    assert query(engine, "select as_of from segmentation_internal.runs") == [(datetime.date(2024, 4, 1),)]
    # the customers were staged on the server for the run, and dropped with it
    assert query(engine, "select count(*) from segmentation_internal.current_segments") == [(60,)]
    assert query(engine, "select relname from pg_class where relname ~ '^run_customers_r[0-9]+$'") == []
    names = set(outcome.profiles["segment_name"])
    assert names == {"Champions", "Lost"}
    columns = {row[0] for row in query(
        engine, "select column_name from information_schema.columns where table_name = 'current_customer_segments'")}
    assert {"recency_days", "frequency", "monetary", "r_score"} <= columns


def test_a_run_on_attributes_and_orders_keeps_customers_of_either_side_and_counts_them(engine, tmp_path):
    customers = ["CustomerID,Income"] + [f"{c},{20 + (c % 2) * 80}" for c in range(1, 61)]
    orders = ["CustomerID,OrderDate,Amount"]
    for c in [*range(1, 51), *range(61, 66)]:  # 51..60 never ordered; 61..65 have no attributes
        orders += [f"{c},2024-0{1 + c % 2}-1{day},{10 + (c % 2) * 90}" for day in range(1 + (c % 2) * 4)]
    settings = load_settings(
        database_url="postgresql://unused@localhost/unused", write_report=False, orders={}, k=2,
        dataset={"id_column": "CustomerID", "columns": {"income": {"from": "Income", "type": "number", "min": 0}}},
    )
    outcome = run_once(engine, settings, write(tmp_path, "\n".join(customers) + "\n", "customers.csv"),
                       write(tmp_path, "\n".join(orders) + "\n"))
    assert outcome.n_customers == 65
    assert outcome.result.n_imputed["income"] == 5 and outcome.result.n_imputed["recency_days"] == 10
    assert outcome.result.n_imputed["frequency"] == 0  # no orders: frequency 0, not unknown
    segments = query(engine, "select customer_id, frequency, income from segmentation.current_customer_segments"
                             " where customer_id in (55, 63) order by 1")
    assert [(row[0], row[1]) for row in segments] == [(55, 0), (63, 1 + (63 % 2) * 4)]
    assert segments[1][2] is None  # attributes unknown are shown as such, imputed only for the fit
