"""Row rules of the import, line by line (no database)."""

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from segmentation.errors import ImportRefused
from segmentation.ingest import map_header, normalise_header, parse_line

MALL_HEADER = ["CustomerID", "Genre", "Age", "Annual Income (k$)", "Spending Score (1-100)"]


@pytest.fixture
def layout():
    return map_header(MALL_HEADER, {}, "test.csv")


def test_mall_header_maps_every_column(layout):
    assert layout.positions == {
        "customer_id": 0, "gender": 1, "age": 2, "annual_income_k": 3, "spending_score": 4,
    }


def test_header_spelling_variants_map_automatically():
    header = [" customer_id ", "GENDER", "age", "annual income k$", "Spending-Score"]
    assert set(map_header(header, {}, "x.csv").positions) == {
        "customer_id", "gender", "age", "annual_income_k", "spending_score",
    }


def test_missing_column_is_named_in_the_error():
    with pytest.raises(ImportRefused, match=r"x\.csv line 1: header has no column for spending_score"):
        map_header(["CustomerID", "Gender", "Age", "Annual Income (k$)"], {}, "x.csv")


def test_column_map_setting_maps_other_exports():
    header = ["client", "sex", "years", "revenue", "score_100"]
    layout = map_header(header, {"client": "customer_id", "years": "age", "revenue": "annual_income_k",
                                 "score_100": "spending_score"}, "x.csv")
    assert layout.positions["age"] == 2 and layout.positions["annual_income_k"] == 3


def test_extra_columns_are_listed_as_ignored():
    layout = map_header(MALL_HEADER + ["Loyalty tier"], {}, "x.csv")
    assert layout.ignored == ("Loyalty tier",)


def test_normalise_header_drops_case_spaces_and_punctuation():
    assert normalise_header("Spending Score (1-100)") == "spendingscore1100"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0001,Male,19,15,39", (1, "Male", 19, "15", 39)),
        ("7, female , 30 , 15.5 , 100", (7, "Female", 30, "15.5", 100)),
        ('"8","F","30","70","1"', (8, "Female", 30, "70", 1)),
        ("9,m,,,", (9, "Male", None, None, None)),
        ("10,,0,0,50", (10, None, 0, "0", 50)),
        ("11,MALE,120,1e2,5", (11, "Male", 120, "1e2", 5)),
    ],
)
def test_valid_lines_parse_to_normalised_values(layout, line, expected):
    customer_id, row, reason = parse_line(line, layout)
    assert reason is None
    assert row == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,Male,abc,15,39", "age 'abc' is not a whole number"),
        ("1,Male,19.5,15,39", "age '19.5' is not a whole number"),
        ("1,Male,121,15,39", "age 121 is outside 0..120"),
        ("1,Male,-1,15,39", "age -1 is outside 0..120"),
        ("1,Male,19,15,101", "spending score 101 is outside 1..100"),
        ("1,Male,19,15,0", "spending score 0 is outside 1..100"),
        ("1,Male,19,-3,39", "annual income '-3' is below 0"),
        ("1,Male,19,lots,39", "annual income 'lots' is not a number"),
        ("1,Male,19,nan,39", "annual income 'nan' is not a number"),
        ("1,Male,19,1_000,39", "annual income '1_000' is not a number"),
        ("1,Other,19,15,39", "gender 'Other' is not Male, Female, M, F or empty"),
        ("x,Male,19,15,39", "customer id 'x' is not a positive whole number"),
        ("0,Male,19,15,39", "customer id '0' is not a positive whole number"),
        ("-4,Male,19,15,39", "customer id '-4' is not a positive whole number"),
        (",Male,19,15,39", "customer id is empty"),
        ("99999999999999999999,Male,19,15,39", "customer id '99999999999999999999' is too large"),
        ("1,Male,19,15,39,extra", "6 fields, expected 5"),
        ("1,Male,19,15", "4 fields, expected 5"),
        ("", "empty line"),
        ("1,\"x'); DROP TABLE segmentation.customers; --\",19,15,39", "gender"),
    ],
)
def test_invalid_lines_are_rejected_with_a_readable_reason(layout, line, reason):
    _, row, rejected = parse_line(line, layout)
    assert row is None
    assert rejected is not None and rejected.startswith(reason)


def test_rejected_line_keeps_its_customer_id_when_readable(layout):
    customer_id, row, reason = parse_line("42,Male,abc,15,39", layout)
    assert (customer_id, row) == (42, None) and reason


@pytest.mark.parametrize(
    "content",
    [b"a\nbb\r\nccc", b"\xef\xbb\xbfh\n12345678901234\n\n", b"x\n", b"abc", b"1\r\n2\r\n"],
)
def test_lines_are_split_the_same_whatever_the_block_boundaries(tmp_path, monkeypatch, content):
    import hashlib

    from segmentation import ingest

    path = tmp_path / "f.csv"
    path.write_bytes(content)
    expected = content.decode("utf-8-sig").split("\n")
    if content.endswith(b"\n"):
        expected.pop()
    expected = [line.removesuffix("\r") for line in expected]
    for block in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(ingest, "BLOCK_BYTES", block)
        digest = hashlib.sha256()
        numbered = list(ingest._numbered_lines(path, digest, lambda *_: None))
        assert numbered == list(enumerate(expected, start=1))
        assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


PLAIN_ISH_VALUE = st.one_of(
    st.integers(-5, 130).map(str),
    st.integers(0, 10**20).map(str),
    st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(0, 3), st.integers(0, 200)),
    st.decimals(min_value=-1, max_value=10**13, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["", "Male", "Female", "male", "MALE", "fEmAlE", "M", "f", "Mx", '"Male"', '"f"', '""', '"0001"', '"12.5"', '"5', " 5", "5 ", "+5", "1e2", ".5", "5.", '"5"', "x"]),
)


@hypothesis_settings(max_examples=2000, deadline=None)
@given(values=st.lists(PLAIN_ISH_VALUE, min_size=5, max_size=5), order=st.permutations(range(5)))
def test_a_line_the_plain_patterns_accept_means_the_same_to_copy_as_to_parse_line(values, order):
    """The fast path sends plain lines as they are: PostgreSQL must read what parse_line reads."""
    import re
    from decimal import Decimal

    from segmentation.ingest import CANONICAL_COLUMNS, ColumnLayout, _Writer, plain_line_pattern, spell_genders

    layout = ColumnLayout(",", 5, {column: order[i] for i, column in enumerate(CANONICAL_COLUMNS)}, ())
    fields = [""] * 5
    for column, value in zip(CANONICAL_COLUMNS, values):
        fields[layout.positions[column]] = value
    line = ",".join(fields)
    writer = _Writer(layout, "", lambda *_: None)
    assert bool(writer.plain_block.fullmatch(line + "\n")) == bool(writer.plain_line.fullmatch(line))
    assert bool(writer.spelt_block.fullmatch(line + "\n")) == bool(writer.spelt_line.fullmatch(line))
    for any_gender in (False, True):
        if not re.fullmatch(plain_line_pattern(layout, any_gender), line):
            continue
        _, row, reason = parse_line(line, layout)
        assert reason is None, line
        sent = spell_genders(line).split(",") if any_gender else fields
        # what CSV COPY makes of each field: an unquoted empty field is NULL, quotes are removed
        # (a quoted empty field would be an empty string), then numbers are parsed
        def copy_value(field):
            if field == "":
                return None
            return field[1:-1] if len(field) >= 2 and field[0] == field[-1] == '"' else field

        as_copy = {column: copy_value(sent[layout.positions[column]]) for column in CANONICAL_COLUMNS}
        assert row[0] == int(as_copy["customer_id"])
        assert row[1] == as_copy["gender"]
        assert row[2] == (None if as_copy["age"] is None else int(as_copy["age"]))
        assert (None if row[3] is None else Decimal(row[3])) == (
            None if as_copy["annual_income_k"] is None else Decimal(as_copy["annual_income_k"]))
        assert row[4] == (None if as_copy["spending_score"] is None else int(as_copy["spending_score"]))


def test_the_plain_patterns_take_the_common_spellings(layout):
    import re

    from segmentation.ingest import plain_line_pattern

    assert re.fullmatch(plain_line_pattern(layout), "0001,Female,19,15.5,39")
    assert not re.fullmatch(plain_line_pattern(layout), "1,M,19,15,39")
    for gender in ["M", "f", "MALE", "female", ""]:
        assert re.fullmatch(plain_line_pattern(layout, any_gender=True), f"1,{gender},19,15,39")
    assert plain_line_pattern(map_header(MALL_HEADER + ["Tier"], {}, "x.csv")) is None


def test_a_block_of_plain_lines_is_sent_without_reading_each_line(layout, monkeypatch):
    from segmentation import ingest

    monkeypatch.setattr(ingest, "parse_line", lambda *_: pytest.fail("a plain line was parsed one by one"))
    writer = ingest._Writer(layout, ",7,7", lambda *_: pytest.fail("nothing is rejected"))
    block = "0001,Male,19,15,39\n2,Female,,15.5,100\n3,,120,0,1\n"
    assert writer.records(2, block) == "0001,Male,19,15,39,7,7\n2,Female,,15.5,100,7,7\n3,,120,0,1,7,7\n"
    spelt = "4,M,19,15,39\n5,female,1,1,1\n6,,1,1,1\n"
    assert writer.records(5, spelt) == "4,Male,19,15,39,7,7\n5,Female,1,1,1,7,7\n6,,1,1,1,7,7\n"
    quoted = '"0007","f","30",15,39\n8,"Male",,"1.5",1\n'
    assert writer.records(8, quoted) == '"0007","Female","30",15,39,7,7\n8,"Male",,"1.5",1,7,7\n'
    assert (writer.rows_read, writer.rows_valid) == (8, 8)


def test_a_block_with_an_unusual_line_is_read_line_by_line(layout):
    from segmentation import ingest

    rejected = []
    writer = ingest._Writer(layout, ",,", lambda number, *rest: rejected.append((number, *rest)) or "R\n")
    block = "1,Male,19,15,39\n2, f ,30,15,39\n3,Alien,1,1,1\n4,m,1,1,1\n"
    assert writer.records(10, block) == "1,Male,19,15,39,,\n2,Female,30,15,39,,\nR\n4,Male,1,1,1,,\n"
    assert rejected == [(12, 3, "3,Alien,1,1,1", "gender 'Alien' is not Male, Female, M, F or empty")]
    assert (writer.rows_read, writer.rows_valid) == (4, 3)


def test_progress_logs_lines_and_rate_when_not_on_a_terminal(tmp_path, caplog):
    import hashlib
    import logging

    from segmentation import ingest

    path = tmp_path / "f.csv"
    path.write_text("h\n" + "1,2\n" * 1000)
    progress = ingest._Progress(path, log_every_seconds=0)
    with caplog.at_level(logging.INFO, logger="segmentation.ingest"):
        assert len(list(ingest._numbered_lines(path, hashlib.sha256(), progress))) == 1001
    assert progress.rows == 1001 and progress.seen == path.stat().st_size
    assert "1001 lines" in caplog.text and "lines/s" in caplog.text
