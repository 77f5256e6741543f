"""Row rules of the import, value by value and line by line (no database)."""

import csv
import math
import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from segmentation import ingest
from segmentation.dataset import MALL, Column, Dataset
from segmentation.errors import ImportRefused
from segmentation.ingest import (
    ColumnLayout,
    RowRejected,
    integer_range_pattern,
    map_header,
    normalise_header,
    parse_customer_id,
    parse_line,
    parse_value,
    plain,
    plain_line_pattern,
    records,
    rules,
    source,
)

MALL_HEADER = ["CustomerID", "Genre", "Age", "Annual Income (k$)", "Spending Score (1-100)"]

#: a hand-made declaration with every column type, bounded and unbounded
EVERY_TYPE = Dataset(
    id_column="Client",
    id_type="text",
    columns=(
        Column("income", "Income", "number", "income", minimum=0),
        Column("balance", "Balance", "number", "balance", minimum=0, maximum=1e6),
        Column("delta", "Delta", "number", "delta"),
        Column("ratio", "Ratio", "number", "ratio", minimum=-0.5, maximum=2.25),
        Column("age", "Age", "whole", "age", minimum=0, maximum=120),
        Column("cards", "Cards", "whole", "cards", minimum=1),
        Column("offset", "Offset", "whole", "offset"),
        Column("debt", "Debt", "whole", "debt", minimum=-1000, maximum=-10),
        Column("region", "Region", "category", "region", values=("East", "West", "South"),
               value_aliases=(("e", "East"), ("w", "West"))),
        Column("segment_code", "Segment code", "category", "segment code"),
        Column("student", "Student", "boolean", "student"),
    ),
)
EVERY_TYPE_HEADER = ["Client", "Income", "Balance", "Delta", "Ratio", "Age", "Cards", "Offset", "Debt", "Region",
                     "Segment code", "Student"]


@pytest.fixture
def layout():
    return map_header(MALL_HEADER, MALL, {}, "test.csv")


def column(name):
    return EVERY_TYPE.column(name)


# --- the header ------------------------------------------------------------------------------


def test_mall_header_maps_every_column(layout):
    assert layout.positions == {
        "customer_id": 0, "gender": 1, "age": 2, "annual_income_k": 3, "spending_score": 4,
    }


def test_header_spelling_variants_map_automatically():
    header = [" customer_id ", "GENDER", "age", "annual income k$", "Spending-Score"]
    assert map_header(header, MALL, {}, "x.csv").positions == {
        "customer_id": 0, "gender": 1, "age": 2, "annual_income_k": 3, "spending_score": 4,
    }


def test_a_declared_header_maps_by_source_names_in_declaration_order():
    header = list(reversed(EVERY_TYPE_HEADER)) + ["Branch"]
    layout = map_header(header, EVERY_TYPE, {}, "x.csv")
    assert list(layout.positions) == ["customer_id", *EVERY_TYPE.names]
    assert layout.positions["customer_id"] == 11 and layout.positions["student"] == 0
    assert layout.ignored == ("Branch",)


def test_missing_column_is_named_in_the_error():
    with pytest.raises(ImportRefused, match=r"x\.csv line 1: header has no column for spending_score "
                                            r"\('Spending Score \(1-100\)'\); found 'CustomerID', 'Gender'"):
        map_header(["CustomerID", "Gender", "Age", "Annual Income (k$)"], MALL, {}, "x.csv")


def test_a_missing_id_names_the_expected_header():
    with pytest.raises(ImportRefused, match=r"no column for customer_id \('Client'\)"):
        map_header(EVERY_TYPE_HEADER[1:], EVERY_TYPE, {}, "x.csv")


def test_the_header_names_listed_when_a_column_is_missing_are_capped():
    header = [f"column {number}" for number in range(1, 31)]
    with pytest.raises(ImportRefused) as refused:
        map_header(header, MALL, {}, "wide.csv")
    message = str(refused.value)
    assert "'column 20' and 10 more." in message and "'column 21'" not in message
    assert "customer_id ('CustomerID'), gender ('Gender'), age ('Age')" in message


def test_column_map_setting_maps_other_exports():
    header = ["client", "sex", "years", "revenue", "score_100"]
    layout = map_header(header, MALL, {"client": "customer_id", "years": "age", "revenue": "annual_income_k",
                                       "score_100": "spending_score"}, "x.csv")
    assert layout.positions["age"] == 2 and layout.positions["annual_income_k"] == 3


def test_column_map_comes_before_the_declared_names():
    header = EVERY_TYPE_HEADER + ["Net income"]
    layout = map_header(header, EVERY_TYPE, {"Net Income": "income"}, "x.csv")
    assert layout.positions["income"] == len(EVERY_TYPE_HEADER)
    assert layout.ignored == ("Income",)


def test_two_columns_for_one_target_are_refused():
    with pytest.raises(ImportRefused, match="'CustomerID' and 'Customer ID' both map to customer_id"):
        map_header(["CustomerID", "Customer ID", *MALL_HEADER[1:]], MALL, {}, "x.csv")
    with pytest.raises(ImportRefused, match="'Customer ID' and 'customer_id' both map to customer_id"):
        map_header(["Customer ID", "customer_id", *MALL_HEADER[1:]], MALL, {}, "x.csv")


@pytest.mark.parametrize("header", [["_id", "id"], ["id", "_id"]])
def test_a_header_spelled_exactly_as_declared_wins_over_one_that_only_normalises_alike(header):
    declared = Dataset("id", "whole", (Column("spent", "spent", "number", "amount spent"),))
    layout = map_header([*header, "spent"], declared, {}, "x.csv")
    assert layout.positions["customer_id"] == header.index("id")
    assert layout.ignored == ("_id",)
    mapped = map_header([*header, "spent"], declared, {"_id": "customer_id"}, "x.csv")
    assert mapped.positions["customer_id"] == header.index("_id")


def test_column_map_to_an_undeclared_name_is_refused():
    with pytest.raises(ImportRefused, match="column_map maps 'x' to 'salary'"):
        map_header(MALL_HEADER, MALL, {"x": "salary"}, "x.csv")


def test_extra_columns_are_listed_as_ignored():
    layout = map_header(MALL_HEADER + ["Loyalty tier"], MALL, {}, "x.csv")
    assert layout.ignored == ("Loyalty tier",)


def test_normalise_header_drops_case_spaces_and_punctuation():
    assert normalise_header("Spending Score (1-100)") == "spendingscore1100"


# --- the mall's lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0001,Male,19,15,39", ("1", ("Male", "19", "15", "39"))),
        ("7, female , 30 , 15.5 , 100", ("7", ("Female", "30", "15.5", "100"))),
        ('"8","F","30","70","1"', ("8", ("Female", "30", "70", "1"))),
        ("9,m,,,", ("9", ("Male", None, None, None))),
        ("10,,0,0,50", ("10", (None, "0", "0", "50"))),
        ("11,MALE,120,1e2,5", ("11", ("Male", "120", "1e2", "5"))),
        ("12,Male,+019,+082.50,099", ("12", ("Male", "19", "082.50", "99"))),
        ("'0013',Male,-0,.5,1", ("13", ("Male", "0", ".5", "1"))),
    ],
)
def test_valid_lines_parse_to_stored_text(layout, line, expected):
    parsed = parse_line(line, layout, MALL)
    assert parsed.reason is None
    assert (parsed.customer_id, parsed.values) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,Male,abc,15,39", "age 'abc' is not a whole number"),
        ("1,Male,19.5,15,39", "age '19.5' is not a whole number"),
        ("1,Male,121,15,39", "age 121 is outside 0..120"),
        ("1,Male,-1,15,39", "age -1 is outside 0..120"),
        ("1,Male,19,15,101", "spending score 101 is outside 1..100"),
        ("1,Male,19,15,0", "spending score 0 is outside 1..100"),
        ("1,Male,19,-3,39", "annual income '-3' is below its minimum 0"),
        ("1,Male,19,2e12,39", "annual income '2e12' is above its maximum 1000000000000"),
        ("1,Male,19,lots,39", "annual income 'lots' is not a number"),
        ("1,Male,19,nan,39", "annual income 'nan' is not a number"),
        ("1,Male,19,1_000,39", "annual income '1_000' is not a number"),
        ("1,Other,19,15,39", "gender 'Other' is not one of Female, Male"),
        ("x,Male,19,15,39", "customer id 'x' is not a positive whole number"),
        ("0,Male,19,15,39", "customer id '0' is not a positive whole number"),
        ("-4,Male,19,15,39", "customer id '-4' is not a positive whole number"),
        (",Male,19,15,39", "customer id is empty"),
        ("99999999999999999999,Male,19,15,39", "customer id '99999999999999999999' is too large (at most 18 digits)"),
        ("1,Male,19,15,39,extra", "6 fields, expected 5"),
        ("1,Male,19,15", "4 fields, expected 5"),
        ('1,"Male,19,15,39', "unbalanced double quote"),
        ("", "empty line"),
        ("  ", "empty line"),
        ("1,\"x'); DROP TABLE segmentation_internal.customers; --\",19,15,39",
         "gender \"x'); DROP TABLE segmentation_internal.cu\"... (11 more characters) is not one of Female, Male"),
    ],
)
def test_invalid_lines_are_rejected_with_a_readable_reason(layout, line, reason):
    parsed = parse_line(line, layout, MALL)
    assert parsed.values is None
    assert parsed.reason is not None and parsed.reason.startswith(reason)


def test_rejected_line_keeps_its_customer_id_when_readable(layout):
    parsed = parse_line("0042,Male,abc,15,39", layout, MALL)
    assert (parsed.customer_id, parsed.values) == ("42", None) and parsed.reason
    assert parse_line("0043,Male,19,15", layout, MALL).customer_id == "43"  # wrong field count
    assert parse_line("abc,Male,19,15", layout, MALL).customer_id is None


def test_long_values_are_quoted_with_their_first_forty_characters(layout):
    parsed = parse_line("1,Male," + "x" * 100 + ",15,39", layout, MALL)
    assert parsed.reason == "age '" + "x" * 40 + "'... (60 more characters) is not a whole number"
    assert parsed.pattern == "age '…' is not a whole number"


def test_reasons_of_one_kind_share_a_pattern(layout):
    patterns = {parse_line(line, layout, MALL).pattern for line in ("1,Male,abc,15,39", "2,Male,x,1,1", "3,Male,'',1,1")}
    assert patterns == {"age '…' is not a whole number", None}  # "''" is an empty (NULL) age
    assert parse_line("1,Male,130,15,39", layout, MALL).pattern == parse_line("1,Male,-2,15,39", layout, MALL).pattern
    assert ingest.reason_pattern("age 'abc' is not a whole number") == "age '…' is not a whole number"


# --- every type --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("income", "15", "15"),
        ("income", "+15.50", "15.50"),
        ("income", "0015.5", "0015.5"),
        ("income", "1e3", "1e3"),
        ("income", "5.", "5."),
        ("income", ".5", ".5"),
        ("income", "-0", "-0"),
        ("income", "1" * 15 + "." + "1" * 15, "1" * 15 + "." + "1" * 15),  # 30 significant digits
        ("income", "0" * 60 + "1.50", "0" * 60 + "1.50"),  # 64 characters
        ("income", "1000000000000000", "1000000000000000"),  # 1e15
        ("balance", "1000000", "1000000"),
        ("balance", "1e6", "1e6"),
        ("delta", "-1e-300", "-1e-300"),
        ("delta", "0e-999", "0e-999"),
        ("delta", "-1e15", "-1e15"),
        ("delta", "0.000000000000000000001", "0.000000000000000000001"),
        ("delta", "-123456789012345.5", "-123456789012345.5"),
        ("ratio", "-0.5", "-0.5"),
        ("ratio", "2.25", "2.25"),
        ("age", "007", "7"),
        ("age", "+5", "5"),
        ("age", "-0", "0"),
        ("age", "0" * 5000 + "42", "42"),
        ("offset", "-" + "0" * 30 + "7", "-7"),
        ("cards", "999999999999999999", "999999999999999999"),
        ("offset", "-999999999999999999", "-999999999999999999"),
        ("debt", "-10", "-10"),
        ("region", "east", "East"),
        ("region", "WEST", "West"),
        ("region", "e", "East"),
        ("region", "W", "West"),
        ("segment_code", "Gold Plus", "Gold Plus"),
        ("segment_code", "0001", "0001"),
        ("student", "Yes", "true"),
        ("student", "n", "false"),
        ("student", "TRUE", "true"),
        ("student", "f", "false"),
        ("student", "1", "true"),
        ("student", "0", "false"),
        ("student", "", None),
        ("income", "", None),
    ],
)
def test_each_type_stores_its_normal_form(name, value, stored):
    assert parse_value(column(name), value) == stored


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("income", "15k", "income '15k' is not a number"),
        ("income", "--5", "income '--5' is not a number"),
        ("income", "-+5", "income '-+5' is not a number"),
        ("income", "5\x00", "income '5\\x00' is not a number"),
        ("income", "\ud800", "income '\\ud800' is not a number"),
        ("income", "1e999", "income '1e999' is too large (at most 1e15 in absolute value)"),
        ("income", "1e1000", "income '1e1000' is too large (at most 1e15 in absolute value)"),
        ("delta", "-1000000000000000.5", "delta '-1000000000000000.5' is too large (at most 1e15 in absolute value)"),
        ("delta", "1" * 31, "delta '" + "1" * 31 + "' has more than 30 significant digits"),
        ("income", "1" * 65, "income '" + "1" * 40 + "'... (25 more characters) has more than 30 significant digits"),
        ("income", "1." + "0" * 20000,
         "income '1." + "0" * 38 + "'... (19962 more characters) has more than 30 significant digits"),
        ("income", "0." + "0" * 19999 + "1",
         "income '0." + "0" * 38 + "'... (19962 more characters) is longer than 64 characters"),
        ("delta", "1e-1001", "delta '1e-1001' has more than 1000 decimal places"),
        ("delta", "-1e-999", "delta '-1e-999' is too close to zero (at least 1e-300 in absolute value, or 0)"),
        ("delta", "9.99e-301", "delta '9.99e-301' is too close to zero (at least 1e-300 in absolute value, or 0)"),
        ("delta", "0e-99999999999999999999", "delta '0e-99999999999999999999' has more than 1000 decimal places"),
        ("income", "١٢", "income '١٢' is not a number"),  # digits, but not ASCII ones
        ("income", "-1e-999", "income '-1e-999' is below its minimum 0"),
        ("balance", "-3", "balance '-3' is below its minimum 0"),
        ("balance", "1000000.01", "balance '1000000.01' is above its maximum 1000000"),
        ("ratio", "-0.51", "ratio '-0.51' is below its minimum -0.5"),
        ("ratio", "2.2500001", "ratio '2.2500001' is above its maximum 2.25"),
        ("age", "abc", "age 'abc' is not a whole number"),
        ("age", "19.0", "age '19.0' is not a whole number"),
        ("age", "1e2", "age '1e2' is not a whole number"),
        ("age", "1234567890123456789", "age '1234567890123456789' is too large (at most 18 digits)"),
        ("offset", "9" * 5000, "offset '" + "9" * 40 + "'... (4960 more characters) is too large (at most 18 digits)"),
        ("age", "--5", "age '--5' is not a whole number"),
        ("age", "-+5", "age '-+5' is not a whole number"),
        ("age", "5\x00", "age '5\\x00' is not a whole number"),
        ("age", "130", "age 130 is outside 0..120"),
        ("age", "-02", "age -2 is outside 0..120"),
        ("cards", "0", "cards 0 is below its minimum 1"),
        ("debt", "-9", "debt -9 is outside -1000..-10"),
        ("region", "North", "region 'North' is not one of East, West, South"),
        ("segment_code", "a\x00b", "segment code 'a\\x00b' contains a NUL character"),
        ("segment_code", "a\udc80b", "segment code 'a\\udc80b' contains a lone surrogate (not a Unicode character)"),
        ("region", "\ud800", "region '\\ud800' contains a lone surrogate (not a Unicode character)"),
        ("student", "\x00", "student '\\x00' is not yes/no/true/false/1/0"),
        ("student", "maybe", "student 'maybe' is not yes/no/true/false/1/0"),
        ("student", "2", "student '2' is not yes/no/true/false/1/0"),
    ],
)
def test_each_type_rejects_with_a_reason_naming_label_and_value(name, value, reason):
    with pytest.raises(RowRejected) as rejected:
        parse_value(column(name), value)
    assert str(rejected.value) == reason


@pytest.mark.parametrize(
    ("id_type", "value", "stored"),
    [
        ("whole", "0001", "1"),
        ("whole", "1", "1"),
        ("whole", "0" * 5000 + "42", "42"),
        ("whole", "123456789012345678", "123456789012345678"),
        ("text", "0001", "0001"),
        ("text", "C-17", "C-17"),
        ("text", "x" * 200, "x" * 200),
        ("text", "Anna Maria", "Anna Maria"),
    ],
)
def test_customer_ids_are_stored_as_text(id_type, value, stored):
    assert parse_customer_id(value, id_type) == stored


@pytest.mark.parametrize(
    ("id_type", "value", "reason"),
    [
        ("whole", "", "customer id is empty"),
        ("whole", "000", "customer id '000' is not a positive whole number"),
        ("whole", "1.0", "customer id '1.0' is not a positive whole number"),
        ("whole", "+1", "customer id '+1' is not a positive whole number"),
        ("whole", "1234567890123456789", "customer id '1234567890123456789' is too large (at most 18 digits)"),
        ("whole", "9" * 5000, "customer id '" + "9" * 40 + "'... (4960 more characters) is too large"),
        ("text", "", "customer id is empty"),
        ("text", "x" * 201, "customer id '" + "x" * 40 + "'... (161 more characters) is too long"),
        ("text", "a\x00", "customer id 'a\\x00' contains a NUL character"),
        ("text", "\udfff", "customer id '\\udfff' contains a lone surrogate"),
        ("whole", "1\x00", "customer id '1\\x00' is not a positive whole number"),
    ],
)
def test_invalid_customer_ids_are_rejected(id_type, value, reason):
    with pytest.raises(RowRejected) as rejected:
        parse_customer_id(value, id_type)
    assert str(rejected.value).startswith(reason)


def test_text_ids_are_trimmed_and_unquoted_but_keep_leading_zeros():
    dataset = Dataset("Client", "text", (Column("income", "Income", "number", "income"),))
    layout = map_header(["Client", "Income"], dataset, {}, "x.csv")
    assert parse_line(" '007' ,5", layout, dataset).customer_id == "007"
    assert parse_line('"  007",5', layout, dataset).customer_id == "007"
    assert parse_line("007,5", layout, dataset)[:2] == ("007", ("5",))


# --- the fast path -----------------------------------------------------------------------


@hypothesis_settings(max_examples=300, deadline=None)
@given(low=st.integers(0, 10**20), span=st.integers(0, 10**20), probes=st.lists(st.integers(0, 10**21), max_size=20))
def test_integer_range_patterns_match_exactly_the_range(low, span, probes):
    high = low + span
    pattern = re.compile(integer_range_pattern(low, high))
    for number in [low, high, max(low - 1, 0), high + 1, *probes]:
        assert bool(pattern.fullmatch(str(number))) == (low <= number <= high), number
    assert not pattern.fullmatch("0" + str(low))  # no leading zeros
    assert integer_range_pattern(5, 4) is None


NUMBERISH = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.from_regex(r"[+-]?0*[0-9]{0,30}(\.[0-9]{0,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["0", "-0", "0.0", "-0.0", "1000000", "1000000.0", "1000000.000", "-10", "-1000", "2.25", "-0.5"]),
)
BOUND = st.one_of(st.none(), st.integers(-(10**6), 10**6), st.decimals(-1000, 1000, places=2).map(float),
                  st.sampled_from([1e12, -1e30, 1e30, float("inf")]))


@pytest.mark.slow  # thousands of generated examples: the full suite runs them
@hypothesis_settings(max_examples=600, deadline=None)
@given(kind=st.sampled_from(["number", "whole"]), low=BOUND, high=BOUND, value=NUMBERISH)
def test_a_plain_number_is_valid_and_stored_as_it_is(kind, low, high, value):
    """The fast path only takes values parse_value accepts, and stores them unchanged."""
    if low is not None and high is not None and low > high:
        low, high = high, low
    numeric = Column("x", "X", kind, "x", minimum=None if low is None else float(low),
                     maximum=None if high is None else float(high))
    pattern = re.compile(plain._value_plain(numeric, ","))
    if pattern.fullmatch(value):
        assert parse_value(numeric, value) == (value or None)
    elif value and re.fullmatch(r"-?(0|[1-9][0-9]{0,17})", value) and kind == "whole" and value != "-0":
        # a whole number in its stored form takes the fast path whenever it is in range
        with pytest.raises(RowRejected):
            parse_value(numeric, value)


def test_the_plain_patterns_take_the_common_spellings(layout):
    pattern = re.compile(plain_line_pattern(layout, MALL))
    for line in ["0001,Female,19,15.5,39", "1,M,19,15,39", "1,female,,,", '"2","Male","3","4.5","6"', "3,,120,0,100"]:
        assert pattern.fullmatch(line), line
    for line in ["1,Male,121,1,1", "1,Male,019,1,1", "1,Male,1,-1,1", "1,Male,1,1,0", "1, Male,1,1,1", "1,Male,1,1",
                 "1,Male,+1,1,1", "1,Mx,1,1,1", '1,"",1,1,1"', "0,Male,1,1,1"]:
        assert not pattern.fullmatch(line), line


def test_a_block_of_plain_lines_is_sent_without_reading_each_line(layout, monkeypatch):
    monkeypatch.setattr(records, "parse_line", lambda *_: pytest.fail("a plain line was parsed one by one"))
    writer = records._Writer(layout, MALL, ",7,7", lambda *_: pytest.fail("nothing is rejected"))
    block = "0001,Male,19,15,39\n2,f,,15.5,100\n3,,120,0,1\n"
    assert writer.records(2, block) == (
        '1,"{Male,19,15,39}",7,7\n2,"{Female,NULL,15.5,100}",7,7\n3,"{NULL,120,0,1}",7,7\n'
    )
    quoted = '"0007","F","30",15,39\n8,"Male",,"1.5",""\n'
    assert writer.records(5, quoted) == '7,"{Female,30,15,39}",7,7\n8,"{Male,NULL,1.5,NULL}",7,7\n'
    assert (writer.rows_read, writer.rows_valid) == (5, 5)


def test_values_with_white_space_are_quoted_as_postgresql_prints_them_on_both_paths(monkeypatch):
    """A re-import compares the staged text with the stored array printed as text: a value with a
    space is quoted, inside a CSV field whose quotes are doubled, on the fast path as on the other."""
    dataset = Dataset("Client", "text", (
        Column("contract", "Contract", "category", "contract", values=("One year", "Month-to-month")),
        Column("city", "City", "category", "city"),
    ))
    layout = map_header(["Client", "Contract", "City"], dataset, {}, "x.csv")
    block = "C-1,one year,New York\nC-2,Month-to-month,Oslo\nC-3,,Le\tHavre\n"
    literals = ['{"One year","New York"}', "{Month-to-month,Oslo}", '{NULL,"Le\tHavre"}']
    fast = records._Writer(layout, dataset, "", lambda *_: pytest.fail("nothing is rejected"))
    monkeypatch.setattr(records, "parse_line", lambda *_: pytest.fail("a plain line was parsed one by one"))
    assert [next(csv.reader([record], strict=True))[1] for record in fast.records(2, block).splitlines()] == literals
    monkeypatch.undo()
    careful = records._Writer(layout, dataset, "", lambda *_: pytest.fail("nothing is rejected"))
    careful.plain_block = careful.plain_line = None
    assert [next(csv.reader([record], strict=True))[1] for record in careful.records(2, block).splitlines()] == literals


def test_a_block_of_lines_in_their_stored_spelling_is_split_once_per_line(layout, monkeypatch):
    writer = records._Writer(layout, MALL, ",7", lambda *_: pytest.fail("nothing is rejected"), numbered=True)
    monkeypatch.setattr(writer, "convert", lambda *_: pytest.fail("a verbatim block took the plain converter"))
    block = "0001,Male,19,15,39\n2,Female,0,15.5,100\n"
    assert writer.records(2, block) == '2,1,"{Male,19,15,39}",7\n3,2,"{Female,0,15.5,100}",7\n'
    for line in ["3,Male,,1,1", "3,M,1,1,1", "3,male,1,1,1", '"3",Male,1,1,1', "3,Male,1,1,1,"]:
        assert not writer.verbatim_block.fullmatch(line + "\n"), line
    reordered = map_header(["Gender", "CustomerID", "Age", "Annual Income (k$)", "Spending Score (1-100)"], MALL, {}, "x")
    assert plain.verbatim_line_pattern(reordered, MALL) is None
    assert plain.verbatim_line_pattern(map_header([*MALL_HEADER, "Extra"], MALL, {}, "x"), MALL) is None


def test_a_block_with_an_unusual_line_is_read_line_by_line(layout):
    rejected = []
    writer = records._Writer(layout, MALL, ",,", lambda number, *rest: rejected.append((number, *rest)) or "R\n")
    block = "1,Male,19,15,39\n2, f ,30,15,39\n3,Alien,1,1,1\n4,m,1,1,1\n"
    assert writer.records(10, block) == (
        '1,"{Male,19,15,39}",,\n"2","{Female,30,15,39}",,\nR\n4,"{Male,1,1,1}",,\n'
    )
    assert rejected == [(12, "3", "3,Alien,1,1,1", "gender 'Alien' is not one of Female, Male")]
    assert (writer.rows_read, writer.rows_valid) == (4, 3)
    assert writer.reasons == {"gender '…' is not one of Female, Male": 1}


def _array(text):
    """Elements of a PostgreSQL text array literal (quoted or not), None for NULL."""
    assert text[0] == "{" and text[-1] == "}", text
    values, index, body = [], 0, text[1:-1]
    while index <= len(body):
        if index < len(body) and body[index] == '"':
            index += 1
            value = []
            while body[index] != '"':
                if body[index] == "\\":
                    index += 1
                value.append(body[index])
                index += 1
            values.append("".join(value))
            index += 2  # closing quote and comma
        else:
            end = body.find(",", index)
            end = len(body) if end < 0 else end
            element = body[index:end]
            assert element == element.strip() and element and not set(element) & set('"{}\\'), element
            values.append(None if element.upper() == "NULL" else element)
            index = end + 1
    return tuple(values)


def _decoded(record):
    """(customer_id, values) of a COPY record `id,"{...}",...` as PostgreSQL would read it."""
    fields = next(csv.reader([record]))
    return fields[0], _array(fields[1])


#: any character but a line end, lone surrogates (which a str may hold) included
ANY_TEXT = st.text(
    alphabet=st.one_of(st.characters(blacklist_characters="\n"), st.integers(0xD800, 0xDFFF).map(chr)), max_size=12
)
#: values that broke importers: signs doubled, huge and tiny numbers, endless digits, NUL, surrogates
HOSTILE = ["--5", "-+5", "+-5", "9" * 5000, "0" * 5000 + "7", "-1e-999", "1." + "0" * 20000, "0." + "5" * 20000,
           "1e999", "-1e999", "1e-99999", "0e-99999", "1e15", "1000000000000000.1", "1" * 31, "1" * 30,
           "0" * 70 + "1", "nan", "inf", "-Infinity", "1_000", "0x1F", "\x00", "5\x00", "\ud800", "a\udfffb",
           "\ufeff5", "５"]
INTERESTING = st.sampled_from(
    ["", " ", "0", "-0", "007", "+5", "1e2", "5.", ".5", "-1e-999", "1" * 70, "Yes", "no", "T", "maybe", "east",
     "E", "South", "null", "NULL", '"x"', '""', "'a'", "a,b", "{a}", "a\\b", "a b", " a", "\t1", "١", "\x00",
     "\r", "C-1", "x" * 201, "9" * 19, "0" * 30 + "1", *HOSTILE]
)
def _decimal(low, high, places=3):
    return st.decimals(min_value=low, max_value=high, places=places, allow_nan=False, allow_infinity=False).map(str)


def _whole(low, high):
    spelt = st.builds(lambda sign, zeros, n: ("-" if n < 0 else sign) + "0" * zeros + str(abs(n)),
                      st.sampled_from(["", "+"]), st.integers(0, 2), st.integers(low, high))
    return _mostly(st.integers(low, high).map(str), spelt)


def _mostly(usual, *unusual):
    """`usual` most of the time (values in their stored form take the fast path)."""
    return st.integers(0, 9).flatmap(lambda draw: usual if draw < 8 else st.one_of(*unusual))


#: per column of EVERY_TYPE: values that are mostly valid, in many spellings
LIKELY = (
    st.one_of(st.integers(1, 10**18 - 1).map(str), st.integers(1, 999).map("{:05d}".format),
              st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,10}[A-Za-z0-9]", fullmatch=True)),
    _mostly(st.one_of(_decimal(0, 10**6), st.integers(0, 10**25).map(str)), st.sampled_from(["1e3", "5.", ".5", "+1"])),
    _mostly(_decimal(0, 10**6), st.sampled_from(["1000000", "1000000.0", "1e6", "0.000"])),
    _mostly(_decimal(-(10**9), 10**9, 5), st.sampled_from(["-0", "-1e-999", "1E+2"])),
    _mostly(_decimal(0, 2.25), _decimal(-0.5, 0), st.sampled_from(["-0.5", "2.25", "2.250", "-0.50", "-0", "0"])),
    _whole(0, 120),
    _whole(1, 10**17),
    _whole(-(10**17), 10**17),
    _whole(-1000, -10),
    st.sampled_from(["East", "east", "EAST", "eAsT", "West", "South", "SOUTH", "e", "W", "w", ""]),
    st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9 ]{0,6}[A-Za-z0-9])?)?", fullmatch=True),
    st.sampled_from(sorted({form for word in ingest.BOOLEAN_WORDS for form in (word, word.upper(), word.title())}) + [""]),
)


@st.composite
def every_type_fields(draw):
    """Mostly valid values, some dressed in quotes or spaces, a few replaced by arbitrary text."""
    fields = [draw(likely) for likely in LIKELY]
    for index in draw(st.lists(st.integers(0, len(fields) - 1), max_size=3)):
        fields[index] = draw(st.one_of(
            st.just(f'"{fields[index]}"'), st.just(f" {fields[index]} "), st.just(f"'{fields[index]}'"),
            ANY_TEXT, INTERESTING,
        ))
    return fields


@pytest.mark.slow  # thousands of generated examples: the full suite runs them
@hypothesis_settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=every_type_fields(), id_type=st.sampled_from(["text", "whole"]),
       delimiter=st.sampled_from([",", ";", "\t", "|"]))
def test_any_text_in_any_field_is_accepted_or_rejected_the_same_by_both_paths(fields, id_type, delimiter):
    """Arbitrary text in every field of every column type: no exception, and the fast path
    (one regular expression and the generated converter) stores what parse_line stores."""
    dataset = Dataset("Client", id_type, EVERY_TYPE.columns)
    layout = ColumnLayout(delimiter, 12, dict(map_header(EVERY_TYPE_HEADER, dataset, {}, "x").positions), ())
    line = delimiter.join(fields)
    parsed = parse_line(line, layout, dataset)  # never raises
    assert (parsed.values is None) == (parsed.reason is not None)
    fast = records._Writer(layout, dataset, "", lambda number, customer_id, text, reason: f"R{reason}\n")
    record = fast.records(2, line + "\n") + fast.finish()
    records._csv_quoted(line).encode("utf-8")  # a rejected line's raw text can be sent to PostgreSQL
    if parsed.reason is not None:
        assert record == f"R{parsed.reason}\n"
        assert not fast.plain_line.fullmatch(line)
        return
    assert fast.rows_valid == 1
    record.encode("utf-8")  # no lone surrogate reaches COPY
    assert _decoded(record) == (parsed.customer_id, parsed.values)
    careful = records._Writer(layout, dataset, "", None)
    careful.plain_block = careful.plain_line = None
    careful_record = careful.records(2, line + "\n") + careful.finish()
    assert _decoded(careful_record) == (parsed.customer_id, parsed.values)
    # one spelling per content: a re-import compares the stage's text with the stored row's
    literals = {next(csv.reader([text], strict=True))[1] for text in (record, careful_record)}
    assert literals == {plain.array_literal(parsed.values)}
    for column, value in zip(dataset.columns, parsed.values):  # what float64 and numeric take
        if value is not None and column.type in ("number", "whole"):
            number = Decimal(value)
            assert abs(number) <= 10**18 and len(number.as_tuple().digits) <= 30 or number == 0
            assert -number.as_tuple().exponent <= 1000 and math.isfinite(float(number))
            assert number == 0 or abs(number) >= Decimal("1e-300")  # float8 takes it


@hypothesis_settings(max_examples=500, deadline=None)
@given(values=st.lists(st.one_of(st.integers(-5, 130).map(str), st.sampled_from(["", "Male", "f", "MALE", '"9"'])),
                       min_size=5, max_size=5),
       order=st.permutations(range(5)))
def test_the_fast_path_agrees_with_parse_line_whatever_the_column_order(values, order):
    header = [MALL_HEADER[index] for index in order]
    layout = map_header(header, MALL, {}, "x.csv")
    line = ",".join(values[index] for index in order)
    parsed = parse_line(line, layout, MALL)
    record = records._Writer(layout, MALL, "", lambda *args: "R\n").records(2, line + "\n")
    if parsed.reason is None:
        assert _decoded(record) == (parsed.customer_id, parsed.values)
    else:
        assert record == "R\n"


@pytest.mark.parametrize(
    "content",
    [b"a\nbb\r\nccc", b"\xef\xbb\xbfh\n12345678901234\n\n", b"x\n", b"abc", b"1\r\n2\r\n"],
)
def test_lines_are_split_the_same_whatever_the_block_boundaries(tmp_path, monkeypatch, content):
    import hashlib

    path = tmp_path / "f.csv"
    path.write_bytes(content)
    expected = content.decode("utf-8-sig").split("\n")
    if content.endswith(b"\n"):
        expected.pop()
    expected = [line.removesuffix("\r") for line in expected]
    for block in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(source, "BLOCK_BYTES", block)
        digest = hashlib.sha256()
        numbered = list(source._numbered_lines(path, digest, lambda *_: None))
        assert numbered == list(enumerate(expected, start=1))
        assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


def test_progress_logs_lines_and_rate_when_not_on_a_terminal(tmp_path, caplog):
    import hashlib
    import logging

    path = tmp_path / "f.csv"
    path.write_text("h\n" + "1,2\n" * 1000)
    progress = source._Progress(path, log_every_seconds=0)
    with caplog.at_level(logging.INFO, logger="segmentation.ingest"):
        assert len(list(source._numbered_lines(path, hashlib.sha256(), progress))) == 1001
    assert progress.rows == 1001 and progress.seen == path.stat().st_size
    assert "1001 lines" in caplog.text and "lines/s" in caplog.text


def test_range_bounds_are_compared_as_the_user_wrote_them():
    tenth = Column("x", "X", "number", "x", minimum=0.1, maximum=0.3)
    assert parse_value(tenth, "0.1") == "0.1" and parse_value(tenth, "0.3") == "0.3"
    with pytest.raises(RowRejected, match="below its minimum 0.1"):
        parse_value(tenth, "0.0999999999999999999999")
    assert rules._bounds(tenth) == (Decimal("0.1"), Decimal("0.3"))
