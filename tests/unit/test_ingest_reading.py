"""Reading hostile files without a database: line ends, records that span lines, lines too long
to hold, and files that are not CSV text."""

import gzip
import hashlib
import io
import zipfile

import pytest

from segmentation.dataset import MALL
from segmentation.errors import ImportRefused
from segmentation.ingest import map_header, records, source
from segmentation.ingest.source import Block, LongLine

HEADER = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"


@pytest.fixture
def layout():
    return map_header(HEADER.split(","), MALL, {}, "x.csv")


def pieces(path):
    return list(source._blocks(path, hashlib.sha256(), lambda *_: None))


def lines_of(path):
    return list(source._numbered_lines(path, hashlib.sha256(), lambda *_: None))


def write(tmp_path, content: bytes, name="f.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --- line ends ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 2, 3, 5, 1 << 20])
def test_cr_only_line_ends_split_lines_whatever_the_block_boundaries(tmp_path, monkeypatch, block):
    """Excel's "CSV (Macintosh)" ends lines in CR alone; a CRLF split across blocks is one line end."""
    monkeypatch.setattr(source, "BLOCK_BYTES", block)
    path = write(tmp_path, b"\xef\xbb\xbfh\r1,a\r\r2,b\r\n3,c\r4")
    assert lines_of(path) == [(1, "h"), (2, "1,a"), (3, ""), (4, "2,b"), (5, "3,c"), (6, "4")]


def test_a_cr_inside_a_line_of_an_lf_file_stays_in_the_line(tmp_path):
    path = write(tmp_path, b"h\r\n1,a\rb\n2\n")
    assert lines_of(path) == [(1, "h"), (2, "1,a\rb"), (3, "2")]


# --- lines too long to hold ----------------------------------------------------------------


@pytest.mark.parametrize("block", [3, 16, 64, 1 << 20])
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_a_line_over_the_limit_is_skipped_and_counted_whatever_the_blocks(tmp_path, monkeypatch, block, line_end):
    monkeypatch.setattr(source, "BLOCK_BYTES", block)
    monkeypatch.setattr(source, "MAX_LINE_CHARACTERS", 40)
    monkeypatch.setattr(source, "KEPT_CHARACTERS", 10)
    long = "7," + "é" * 100  # 102 characters, 202 bytes
    content = line_end.join([b"h", b"1,a", long.encode(), b"2,b", b"x" * 41, b"3,c"])
    found = pieces(write(tmp_path, content))
    assert [piece for piece in found if isinstance(piece, LongLine)] == [
        LongLine(3, "7," + "é" * 8, 102), LongLine(5, "x" * 10, 41)
    ]
    numbered = lines_of(write(tmp_path, content))
    assert [number for number, _ in numbered] == [1, 2, 3, 4, 5, 6]
    assert numbered[2][1] == "7,éééééééé… (92 more characters not stored)"
    assert numbered[3] == (4, "2,b") and numbered[5] == (6, "3,c")


def test_a_long_line_at_the_end_of_the_file_without_a_line_end(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "BLOCK_BYTES", 8)
    monkeypatch.setattr(source, "MAX_LINE_CHARACTERS", 20)
    found = pieces(write(tmp_path, b"h\n1\n" + b"y" * 50))
    assert found[-1] == LongLine(3, "y" * 50, 50)


def test_a_byte_that_is_not_utf8_inside_a_skipped_line_is_one_character_of_it(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "BLOCK_BYTES", 8)
    monkeypatch.setattr(source, "MAX_LINE_CHARACTERS", 20)
    path = write(tmp_path, b"h\n1\n" + b"y" * 30 + b"\xff" + b"y" * 30 + b"\n2\n")
    found = pieces(path)
    assert LongLine(3, "y" * 30 + "\udcff" + "y" * 30, 61) in found  # rejected for its length, as any long line
    assert found[-1] == source.Block(4, "2\n")  # and the file goes on


def test_a_long_line_is_rejected_with_its_length_and_keeps_its_customer(layout):
    rejected = []
    writer = records._Writer(layout, MALL, "", lambda *args: rejected.append(args) or "")
    writer.feed(LongLine(7, "0042,Male,19," + "9" * 987, 209_715_200))
    assert rejected == [(7, "42", "0042,Male,19," + "9" * 987 + "… (209,714,200 more characters not stored)",
                         "line is 209,715,200 characters long; at most 1,048,576 are read")]
    assert writer.reasons == {"line is … characters long; at most 1,048,576 are read": 1}
    assert (writer.rows_read, writer.rows_valid) == (1, 0)


# --- records that span lines ---------------------------------------------------------------


def test_a_quoted_field_with_a_line_break_is_one_record_numbered_by_its_first_line(layout):
    rejected = []
    writer = records._Writer(layout, MALL, "", lambda *args: rejected.append(args) or "R\n")
    out = writer.records(2, '1,Male,19,15,39\n"2\n",Female,21,15,81\n3,"Fe\n')
    out += writer.records(6, 'male",1,1,1\n4,f,1,1,9\n') + writer.finish()  # the record goes on in the next block
    assert out == '1,"{Male,19,15,39}"\n"2","{Female,21,15,81}"\nR\n4,"{Female,1,1,9}"\n'
    assert rejected == [(5, "3", '3,"Fe\nmale",1,1,1', "gender 'Fe\\nmale' is not one of Female, Male")]
    assert (writer.rows_read, writer.rows_valid) == (4, 3)
    # records 2..5 in the stage: record 3 spans lines 3-4, record 4 lines 5-6
    assert [writer.line_number(record) for record in (2, 3, 4, 5)] == [2, 3, 5, 7]
    assert [writer.lines_of(record) for record in (2, 3, 4, 5)] == [1, 2, 2, 1]


def test_numbered_records_count_from_two_in_file_order_rejects_and_spanning_records_included(layout):
    """The stage's record_number comes from the writer: consecutive, whatever path a record took."""
    writer = records._Writer(layout, MALL, "", lambda *args: "R\n", numbered=True)
    out = writer.records(2, "1,Male,19,15,39\n2,Male,1,1,1\n")  # a plain block
    out += writer.records(4, '3,Ma"le,1,1,1\n"4\n",Female,1,1,1\n5,Male,1,1,1\n')  # reject, spanning, plain
    out += writer.records(8, "6,Male,1,1,1\n") + writer.finish()
    assert [record.split(",")[0] for record in out.splitlines()] == ["2", "3", "4", "5", "6", "7"]
    assert out.splitlines()[2] == "4,R" and writer.rows_read == 6


def test_a_quote_never_closed_rejects_its_line_alone_and_the_rest_is_read_again(layout):
    rejected = []
    writer = records._Writer(layout, MALL, "", lambda *args: rejected.append(args[0::3]) or "R\n")
    out = writer.records(2, '1,"Male,19,15,39\n2,Male,1,1,1\n3,Male,1,1,1\n') + writer.finish()
    assert out == 'R\n2,"{Male,1,1,1}"\n3,"{Male,1,1,1}"\n'
    assert rejected == [(2, records.UNBALANCED_QUOTE)]
    assert writer.rows_read == 3


def test_two_stray_quotes_do_not_swallow_the_lines_between_them(layout):
    """Lines 2 and 5 each have one quote: joined, they do not make five fields, so each is rejected."""
    rejected = []
    writer = records._Writer(layout, MALL, "", lambda *args: rejected.append(args[0:2]) or "R\n")
    text = '1,Ma"le,19,15,39\n2,Male,1,1,1\n3,Male,1,1,1\n4,"Male,1,1,1\n5,Male,1,1,1\n'
    out = writer.records(2, text) + writer.finish()
    assert out == 'R\n2,"{Male,1,1,1}"\n3,"{Male,1,1,1}"\nR\n5,"{Male,1,1,1}"\n'
    assert rejected == [(2, "1"), (5, "4")]  # the ids before the quote keep their customers


def test_a_record_longer_than_the_limit_is_not_joined(layout, monkeypatch):
    monkeypatch.setattr(records, "MAX_LINE_CHARACTERS", 30)
    rejected = []
    writer = records._Writer(layout, MALL, "", lambda *args: rejected.append(args[0]) or "R\n")
    out = writer.records(2, '1,"Male\n2,Male,1,1,1\n3,Male,1,1,1\n4,Male,1,1,1",1,1,1\n') + writer.finish()
    assert rejected == [2, 5] and out.count("R\n") == 2 and writer.rows_valid == 2


def test_an_open_record_before_a_long_line_is_given_back_first(layout):
    order = []
    writer = records._Writer(layout, MALL, "", lambda number, *_: order.append(number) or "")
    writer.records(2, '1,"Male,1,1,1\n2,Male,1,1,1\n')
    writer.feed(LongLine(4, "3,", 2_000_000))
    writer.records(5, "5,Male,1,1,1\n")
    writer.finish()
    assert order == [2, 4] and writer.rows_read == 4 and writer.rows_valid == 2


# --- the header ----------------------------------------------------------------------------


def test_a_header_with_a_quoted_line_break_spans_lines(tmp_path):
    path = write(tmp_path, b'CustomerID,"Gen\nder",Age,Annual Income (k$),Spending Score (1-100)\n1,Male,19,15,39\n')
    opened = source._Source.open(path, MALL, {})
    assert opened.layout.positions["gender"] == 1
    assert list(opened.blocks) == [Block(3, "1,Male,19,15,39\n")]
    opened.progress.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"CustomerID," + b"x" * (128 * 1024 + 1) + b"\n1,2\n",
         r"x\.csv line 1: a header field is longer than 131,072 characters\. Is this a customer export\?$"),
        (b'CustomerID,"' + b"x" * (128 * 1024 + 1) + b'"\n1,2\n', "a header field is longer than 131,072 characters"),
        (b"a," * 600_000 + b"\n1\n", r"line 1: the header is 1,200,000 characters long; at most 1,048,576 are read"),
        (b'CustomerID,"Gender\n1,Male\n', "line 1: a double quote in the header is never closed"),
        ("CustomerID,Gender\n".encode("utf-16-le"), "the header contains NUL bytes"),
    ],
)
def test_a_hostile_header_refuses_the_file_with_a_short_message(tmp_path, content, message):
    with pytest.raises(ImportRefused, match=message) as refused:
        source._Source.open(write(tmp_path, content, "x.csv"), MALL, {})
    assert len(str(refused.value)) < 300


# --- files that are not CSV text ---------------------------------------------------------


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("customers.xlsx", _zip({"[Content_Types].xml": "", "xl/workbook.xml": ""}),
         "customers.xlsx is an Excel workbook, not a CSV: open it in Excel and save it as CSV UTF-8"),
        ("customers.csv", _zip({"xl/workbook.xml": ""}), "customers.csv is an Excel workbook, not a CSV"),
        ("customers.ods", _zip({"mimetype": "application/vnd.oasis.opendocument.spreadsheet"}),
         "is an OpenDocument spreadsheet, not a CSV: open it in LibreOffice Calc and save it as CSV"),
        ("customers.zip", _zip({"customers.csv": "CustomerID\n1\n"}),
         "is a zip archive, not a CSV: unzip it and import the CSV inside"),
        ("customers.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100,
         r"is an Excel 97-2003 workbook \(\.xls\), not a CSV: open it in Excel and save it as CSV UTF-8"),
        ("chart.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "is a PNG image, not a CSV"),
        ("report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "is a PDF document, not a CSV"),
        ("customers.csv.gz", gzip.compress(b"CustomerID\n1\n"),
         r"is gzip-compressed: decompress it first \(gunzip\)"),
        ("utf16.csv", "CustomerID,Gender\n1,Male\n".encode("utf-16"), "is UTF-16 text .*: save it as CSV UTF-8"),
        ("utf16be.csv", b"\xfe\xff" + "CustomerID\n".encode("utf-16-be"), "is UTF-16 text"),
    ],
)
def test_a_file_that_is_not_csv_text_is_refused_saying_what_it_is_and_what_to_do(tmp_path, name, content, message):
    path = write(tmp_path, content, name)
    with pytest.raises(ImportRefused, match=message) as refused:
        source._Source.open(path, MALL, {})
    assert str(refused.value).startswith(str(path)) and refused.value.exit_code == 3
