"""Hostile files into a real PostgreSQL: whatever a field holds the record is loaded or rejected
with a reason, Excel's CSVs load as Excel meant them, lines too long to hold are rejected
without holding them, and files that are not CSV text are refused saying what they are."""

import gzip
import io
import zipfile

import pytest
import sqlalchemy as sa

from segmentation.errors import ImportRefused
from segmentation.ingest import import_file
from segmentation.settings import load_settings

MALL_HEADER = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"
EVERY_TYPE = {
    "id_column": "Client",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "min": 0},
        "delta": {"from": "Delta", "type": "number"},
        "age": {"from": "Age", "type": "whole", "min": 0, "max": 120},
        "offset": {"from": "Offset", "type": "whole"},
        "region": {"from": "Region", "type": "category", "values": ["East", "West"]},
        "code": {"from": "Code", "type": "category"},
        "student": {"from": "Student", "type": "boolean"},
    },
}
EVERY_TYPE_HEADER = "Client,Income,Delta,Age,Offset,Region,Code,Student"
ADDRESSES = {
    "id_column": "Client",
    "id_type": "text",
    "columns": {
        "address": {"from": "Address", "type": "category"},
        "income": {"from": "Income", "type": "number", "min": 0},
    },
}


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", **overrides)


def write(path, content: str | bytes):
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def query(engine, statement, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(statement), params).all()


def rejects(engine, batch_id):
    return {row.line_number: row for row in query(
        engine, "select line_number, raw_line, reason from segmentation_internal.import_rejects where batch_id = :id",
        id=batch_id)}


def customers(engine):
    return {row.customer_id: row for row in query(
        engine, "select customer_id, attributes, is_active from segmentation_internal.customers")}


def seed(engine, path, header, lines, **overrides):
    """Make `customers` non-empty (so the next import merges)."""
    import_file(engine, write(path, "\n".join([header, *lines]) + "\n"), settings(**overrides), 1)


# --- item 3: whatever a field holds -------------------------------------------------------

#: (line, reason of its rejection or None when it loads)
HOSTILE = [
    ("C-01,--5,,,,,,", "income '--5' is not a number"),
    ("C-02,,,-+5,,,,", "age '-+5' is not a whole number"),
    ("C-03,,,,--5,,,", "offset '--5' is not a whole number"),
    ("9" * 5000 + ",1,,,,,,", "customer id '" + "9" * 40 + "'... (4960 more characters) is too long"),
    ("C-04,-1e-999,,,,,,", "income '-1e-999' is below its minimum 0"),
    ("C-05,,-1e-999,,,,,", "delta '-1e-999' is too close to zero (at least 1e-300 in absolute value, or 0)"),
    ("C-24,,-1e-300,,,,,", None),
    ("C-06,1." + "0" * 20000 + ",,,,,,",
     "income '1." + "0" * 38 + "'... (19962 more characters) has more than 30 significant digits"),
    ("C-07,,0." + "5" * 20000 + ",,,,,", "delta '0." + "5" * 38 + "'... (19962 more characters) has more than 30"),
    ("C-08,1e999,,,,,,", "income '1e999' is too large (at most 1e15 in absolute value)"),
    ("C-09,,-1e999,,,,,", "delta '-1e999' is too large (at most 1e15 in absolute value)"),
    ("C-10,1e15,-1e15,,,,,", None),
    ("C-11,,1e-99999,,,,,", "delta '1e-99999' has more than 1000 decimal places"),
    ("C-12,,,99999999999999999999,,,,", "age '99999999999999999999' is too large (at most 18 digits)"),
    ("C-13,,,,-" + "0" * 5000 + "7,,,", None),
    ("C-14\x00,1,,,,,,", "customer id 'C-14\\x00' contains a NUL character"),
    ("C-15,5\x00,,,,,,", "income '5\\x00' is not a number"),
    ("C-16,,,\x00,,,,", "age '\\x00' is not a whole number"),
    ("C-17,,,,,Ea\x00st,,", "region 'Ea\\x00st' contains a NUL character"),
    ("C-18,,,,,,a\x00b,", "code 'a\\x00b' contains a NUL character"),
    ("C-19,,,,,,,ye\x00s", "student 'ye\\x00s' is not yes/no/true/false/1/0"),
    ("C-20,nan,inf,,,,,", "income 'nan' is not a number"),
    ("C-21,0x1F,,,,,,", "income '0x1F' is not a number"),
    ("C-22,１２,,,,,,", "income '１２' is not a number"),  # full-width digits
    ("C-23,123456789012345.123456789012345,0.000000000000000000001,007,-0,east,\u00e9t\u00e9,Y", None),
]


@pytest.mark.parametrize("method", ["first load", "merge"])
def test_whatever_a_field_holds_the_line_loads_or_is_rejected_with_a_reason_naming_it(engine, tmp_path, method):
    if method == "merge":
        seed(engine, tmp_path / "seed.csv", EVERY_TYPE_HEADER, ["S-1,1,1,1,1,East,x,yes"], dataset=EVERY_TYPE)
    path = write(tmp_path / "hostile.csv", "\n".join([EVERY_TYPE_HEADER, *(line for line, _ in HOSTILE)]) + "\n")
    result = import_file(engine, path, settings(dataset=EVERY_TYPE, export_mode="incremental"), 1)
    assert result.method == method
    expected_rejects = {number: reason for number, (_, reason) in enumerate(HOSTILE, start=2) if reason}
    assert (result.rows_read, result.rows_rejected) == (len(HOSTILE), len(expected_rejects))
    stored = rejects(engine, result.batch_id)
    assert sorted(stored) == sorted(expected_rejects)
    for number, reason in expected_rejects.items():
        assert stored[number].reason.startswith(reason), (number, stored[number].reason)
        assert len(stored[number].reason) < 200  # values quoted in a reason are capped
        # the raw text, verbatim but for NUL bytes, which PostgreSQL's text cannot hold
        assert stored[number].raw_line == HOSTILE[number - 2][0].replace("\x00", "\ufffd")
    loaded = customers(engine)
    assert loaded["C-24"].attributes == [None, "-1e-300", None, None, None, None, None]
    assert loaded["C-13"].attributes[3] == "-7"
    assert loaded["C-23"].attributes == ["123456789012345.123456789012345", "0.000000000000000000001", "7", "0",
                                         "East", "\u00e9t\u00e9", "true"]
    # what the views and the fit make of the stored text never fails: numeric, bigint, float8
    (failures,) = query(engine, """
        select count(*) filter (where cast(attributes[1] as numeric) is null and attributes[1] is not null)
             + count(*) filter (where cast(attributes[1] as float8) = 'infinity')
             + count(*) filter (where cast(attributes[2] as numeric) is null and attributes[2] is not null)
             + count(*) filter (where cast(attributes[2] as float8) = 'infinity')
             + count(*) filter (where cast(attributes[3] as bigint) is null and attributes[3] is not null)
             + count(*) filter (where cast(attributes[4] as bigint) is null and attributes[4] is not null)
             + count(*) filter (where cast(attributes[7] as boolean) is null and attributes[7] is not null)
        from segmentation_internal.customers
    """)[0]
    assert failures == 0


def test_a_whole_number_id_of_5000_digits_is_rejected_and_5000_leading_zeros_are_not(engine, tmp_path):
    lines = ["9" * 5000 + ",Male,19,15,39", "0" * 5000 + "42,Female,20,16,40", "43,Male,--5,15,39", "44,Male,19,15,-+5"]
    path = write(tmp_path / "ids.csv", "\n".join([MALL_HEADER, *lines]) + "\n")
    result = import_file(engine, path, settings(), 1)
    reasons = {number: row.reason for number, row in rejects(engine, result.batch_id).items()}
    assert reasons == {
        2: "customer id '" + "9" * 40 + "'... (4960 more characters) is too large (at most 18 digits)",
        4: "age '--5' is not a whole number",
        5: "spending score '-+5' is not a whole number",
    }
    assert customers(engine)["42"].attributes == ["Female", "20", "16", "40"]


def test_a_lone_surrogate_in_a_file_is_not_utf8_and_rejects_its_line_naming_the_byte(engine, tmp_path):
    """A surrogate encoded as UTF-8 bytes (as CESU-8 or WTF-8 writers do) is invalid UTF-8: its
    line is rejected (the setting to change named), the other lines load."""
    path = write(tmp_path / "surrogate.csv", MALL_HEADER.encode() + b"\n1,Male,19,15,39\n2,Ma\xed\xa0\x80le,1,1,1\n")
    result = import_file(engine, path, settings(), 1)
    assert (result.rows_inserted, result.rows_rejected) == (1, 1)
    assert set(customers(engine)) == {"1"}
    with engine.connect() as connection:
        reason, raw_line = connection.execute(
            sa.text("select reason, raw_line from segmentation_internal.import_rejects where line_number = 3")).one()
    assert "holds the byte 0xed that is not utf-8 text; set the encoding setting" in reason
    assert raw_line == "2,Ma\ufffd\ufffd\ufffdle,1,1,1"


# --- item 5: Excel's CSVs -----------------------------------------------------------------

#: as Excel writes it: CRLF between records, LF inside a quoted multi-line cell
EXCEL_RECORDS = [
    'C-1,"12 Main St\nApt 4",10',          # lines 2-3
    'C-2,"1 High St",20',                  # line 4
    'C-3,"PO Box 5\nSpringfield\nIL",abc',  # lines 5-7: rejected whole
    "C-4,Plain,30",                        # line 8
    ',"x\ny",1',                           # lines 9-10: no id
    'C-5,"never closed,40',                # line 11: its quote never closes
    "C-6,x,50",                            # line 12: read again on its own
]


@pytest.mark.parametrize("method", ["first load", "merge"])
def test_a_quoted_field_with_a_line_break_loads_as_one_record_numbered_by_its_first_line(engine, tmp_path, method):
    if method == "merge":
        seed(engine, tmp_path / "seed.csv", "Client,Address,Income", ["S-1,x,1"], dataset=ADDRESSES)
    path = write(tmp_path / "excel.csv", "\r\n".join(["Client,Address,Income", *EXCEL_RECORDS]) + "\r\n")
    result = import_file(engine, path, settings(dataset=ADDRESSES, export_mode="incremental"), 1)
    assert (result.method, result.rows_read, result.rows_inserted, result.rows_rejected) == (method, 7, 4, 3)
    stored = rejects(engine, result.batch_id)
    assert {number: (row.raw_line, row.reason) for number, row in stored.items()} == {
        5: ('C-3,"PO Box 5\nSpringfield\nIL",abc', "income 'abc' is not a number"),
        9: (',"x\ny",1', "customer id is empty"),
        11: ('C-5,"never closed,40', "unbalanced double quote (a field's closing quote is missing)"),
    }
    loaded = customers(engine)
    assert loaded["C-1"].attributes == ["12 Main St\nApt 4", "10"]
    assert loaded["C-6"].attributes == ["x", "50"]


def test_a_repeated_id_after_multi_line_records_names_the_lines_of_the_file(engine, tmp_path):
    header = 'Client,"Add\nress",Income'  # lines 1-2: a header cell with a line break
    records = ['C-1,"a\nb",1', 'C-2,"c\nd\ne",2', 'C-1,"f\ng",3', "C-3,h,4", "C-2,i,5"]  # lines 3-4, 5-7, 8-9, 10, 11
    path = write(tmp_path / "repeats.csv", "\n".join([header, *records]) + "\n")
    result = import_file(engine, path, settings(dataset=ADDRESSES), 1)
    assert (result.method, result.rows_read, result.rows_inserted, result.rows_rejected) == ("merge", 5, 3, 2)
    assert {number: (row.raw_line, row.reason) for number, row in rejects(engine, result.batch_id).items()} == {
        3: ('C-1,"a\nb",1', "customer id C-1 appears again on line 8, which replaces this line"),
        5: ('C-2,"c\nd\ne",2', "customer id C-2 appears again on line 11, which replaces this line"),
    }
    assert customers(engine)["C-1"].attributes == ["f\ng", "3"]


@pytest.mark.parametrize("method", ["first load", "merge"])
def test_a_csv_saved_by_excel_for_mac_with_cr_line_ends_loads(engine, tmp_path, method):
    if method == "merge":
        seed(engine, tmp_path / "seed.csv", MALL_HEADER, ["999,Male,1,1,1"])
    lines = ["1,Male,19,15,39", "2,Female,130,15,81", '3,"Fe\rmale",20,16,6', "4,Female,31,17,40"]
    path = write(tmp_path / "mac.csv", "\r".join([MALL_HEADER, *lines]))
    result = import_file(engine, path, settings(export_mode="incremental"), 1)
    assert (result.rows_read, result.rows_inserted, result.rows_rejected) == (4, 2, 2)
    assert {number: (row.raw_line, row.reason) for number, row in rejects(engine, result.batch_id).items()} == {
        3: ("2,Female,130,15,81", "age 130 is outside 0..120"),
        4: ('3,"Fe\nmale",20,16,6', "gender 'Fe\\nmale' is not one of Female, Male"),  # CR inside quotes: a line break
    }
    assert customers(engine)["4"].attributes == ["Female", "31", "17", "40"]


def failed_batch(engine):
    return query(engine, "select status, error from segmentation_internal.import_batches order by batch_id desc limit 1")[0]


def test_a_header_field_over_128_kib_refuses_the_file_with_a_short_message(engine, tmp_path):
    path = write(tmp_path / "wide.csv", "CustomerID," + "x" * 200_000 + "\n1,2\n")
    with pytest.raises(ImportRefused) as refused:
        import_file(engine, path, settings(), 1)
    assert str(refused.value) == (
        f"{path} line 1: a header field is longer than 131,072 characters. Is this a customer export?")
    assert refused.value.exit_code == 3 and customers(engine) == {}
    assert failed_batch(engine) == ("failed", str(refused.value))


# --- item 6: lines too long to hold ----------------------------------------------------------


@pytest.mark.parametrize("method", ["first load", "merge"])
def test_a_line_over_one_mib_is_rejected_with_its_length_keeping_its_first_1000_characters(engine, tmp_path, method):
    if method == "merge":  # customer 2 is known: its too-long line must not make it inactive
        seed(engine, tmp_path / "seed.csv", MALL_HEADER, ["1,Male,1,1,1", "2,Male,1,1,1", "3,Male,1,1,1"])
    long_line = "2,Male,19,15," + "9" * 2_000_000
    path = write(tmp_path / "long.csv", "\n".join([MALL_HEADER, "1,Male,19,15,39", long_line, "3,Female,1,1,1"]) + "\n")
    result = import_file(engine, path, settings(export_mode="full", max_reject_share=0.5), 1)
    assert (result.rows_read, result.rows_rejected) == (3, 1)
    [(number, reject)] = rejects(engine, result.batch_id).items()
    assert number == 3
    assert reject.reason == "line is 2,000,013 characters long; at most 1,048,576 are read"
    assert reject.raw_line == long_line[:1000] + "… (1,999,013 more characters not stored)"
    assert result.top_reasons == [("line is … characters long; at most 1,048,576 are read", 1)]
    loaded = customers(engine)
    assert loaded["3"].attributes == ["Female", "1", "1", "1"]
    if method == "merge":
        assert loaded["2"].is_active and result.rows_deactivated == 0


def test_a_header_over_one_mib_refuses_the_file(engine, tmp_path):
    path = write(tmp_path / "header.csv", "CustomerID" + ",x" * 700_000 + "\n1\n")
    with pytest.raises(ImportRefused, match=r"header\.csv line 1: the header is 1,400,010 characters long;"
                                            r" at most 1,048,576 are read\. Is this a customer export\?$"):
        import_file(engine, path, settings(), 1)
    assert customers(engine) == {}


def test_every_message_and_reason_is_capped(engine, tmp_path):
    wide = write(tmp_path / "wide.csv", ",".join(f"column {number}" for number in range(5000)) + "\n1\n")
    with pytest.raises(ImportRefused) as refused:
        import_file(engine, wide, settings(), 1)
    assert "'column 19' and 4980 more." in str(refused.value) and len(str(refused.value)) < 1000
    long_id = "C" * 200
    lines = [f"{long_id},1,1", "C-2,x" + "y" * 100_000 + ",1", f"{long_id},2,2"]
    path = write(tmp_path / "long_values.csv", "\n".join(["Client,Address,Income", *lines]) + "\n")
    result = import_file(engine, path, settings(dataset=ADDRESSES), 1)
    reasons = {number: row.reason for number, row in rejects(engine, result.batch_id).items()}
    assert reasons == {2: f"customer id {'C' * 40}... (160 more characters) appears again on line 4,"
                          " which replaces this line"}
    assert customers(engine)["C-2"].attributes[0] == "x" + "y" * 100_000  # a long text value is no reason


# --- item 7: files that are not CSV text -------------------------------------------------


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("customers.xlsx", _zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}),
         "customers.xlsx is an Excel workbook, not a CSV: open it in Excel and save it as CSV UTF-8"),
        ("customers.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
         "customers.xls is an Excel 97-2003 workbook (.xls), not a CSV: open it in Excel and save it as CSV UTF-8"),
        ("customers.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "customers.png is a PNG image, not a CSV"),
        ("customers.pdf", b"%PDF-1.4\n1 0 obj\n", "customers.pdf is a PDF document, not a CSV"),
        ("customers.csv.gz", gzip.compress(f"{MALL_HEADER}\n1,Male,19,15,39\n".encode()),
         "customers.csv.gz is gzip-compressed: decompress it first (gunzip) and import the CSV inside"),
        ("customers.txt", f"{MALL_HEADER}\n1,Male,19,15,39\n".encode("utf-16"),
         "customers.txt is UTF-16 text (Excel's \"Unicode Text\"), not UTF-8: save it as CSV UTF-8"),
    ],
)
def test_a_file_that_is_not_csv_is_refused_saying_what_it_is_and_nothing_is_written(
    engine, tmp_path, name, content, message
):
    seed(engine, tmp_path / "seed.csv", MALL_HEADER, ["1,Male,1,1,1"])
    before = query(engine, "select * from segmentation_internal.customers order by customer_id")
    path = write(tmp_path / name, content)
    with pytest.raises(ImportRefused) as refused:
        import_file(engine, path, settings(export_mode="full"), 1)
    assert str(refused.value).startswith(f"{tmp_path}/{message}")
    assert refused.value.exit_code == 3
    assert query(engine, "select * from segmentation_internal.customers order by customer_id") == before
    assert failed_batch(engine) == ("failed", str(refused.value))
    assert query(engine, "select count(*) from segmentation_internal.import_rejects")[0][0] == 0
