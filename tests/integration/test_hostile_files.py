"""Hostile files into a real PostgreSQL: whatever a field holds the record is loaded or rejected
with a reason."""

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
        engine, "select line_number, raw_line, reason from segmentation.import_rejects where batch_id = :id",
        id=batch_id)}


def customers(engine):
    return {row.customer_id: row for row in query(
        engine, "select customer_id, attributes, is_active from segmentation.customers")}


def seed(engine, path, header, lines, **overrides):
    """Make `customers` non-empty (so the next import merges)."""
    import_file(engine, write(path, "\n".join([header, *lines]) + "\n"), settings(**overrides))


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
    result = import_file(engine, path, settings(dataset=EVERY_TYPE, export_mode="incremental"))
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
        from segmentation.customers
    """)[0]
    assert failures == 0


def test_a_whole_number_id_of_5000_digits_is_rejected_and_5000_leading_zeros_are_not(engine, tmp_path):
    lines = ["9" * 5000 + ",Male,19,15,39", "0" * 5000 + "42,Female,20,16,40", "43,Male,--5,15,39", "44,Male,19,15,-+5"]
    path = write(tmp_path / "ids.csv", "\n".join([MALL_HEADER, *lines]) + "\n")
    result = import_file(engine, path, settings())
    reasons = {number: row.reason for number, row in rejects(engine, result.batch_id).items()}
    assert reasons == {
        2: "customer id '" + "9" * 40 + "'... (4960 more characters) is too large (at most 18 digits)",
        4: "age '--5' is not a whole number",
        5: "spending score '-+5' is not a whole number",
    }
    assert customers(engine)["42"].attributes == ["Female", "20", "16", "40"]


def test_a_lone_surrogate_in_a_file_is_not_utf8_and_refuses_it_naming_line_and_column(engine, tmp_path):
    """A surrogate encoded as UTF-8 bytes (as CESU-8 or WTF-8 writers do) is invalid UTF-8."""
    path = write(tmp_path / "surrogate.csv", MALL_HEADER.encode() + b"\n1,Male,19,15,39\n2,Ma\xed\xa0\x80le,1,1,1\n")
    with pytest.raises(ImportRefused, match=r"surrogate\.csv line 3: byte 0xed at column 5 is not valid UTF-8"):
        import_file(engine, path, settings())
    assert customers(engine) == {}
