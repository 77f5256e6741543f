"""Hostile declarations, settings and URLs (issue 22), without a database: each is refused by
settings validation with one line naming the file, column or setting and what to do, before
any work, or (declarations) gives view columns that cannot collide."""

from __future__ import annotations

import errno
import os
import re

import pytest
import typer
from alembic.util import exc as alembic_errors

from jobs import cli
from segmentation import db, view_columns
from segmentation.dataset import parse_dataset, parse_rules
from segmentation.display import printable
from segmentation.errors import ConfigurationError, describe
from segmentation.settings import load_settings
from tests.hostile import HOSTILE_RANGES, HOSTILE_SETTINGS, ISSUE_EXAMPLES, declaration, hostile_declarations


@pytest.fixture(autouse=True)
def no_settings_around(tmp_path, monkeypatch):
    """Each test in a folder of its own (no segment.toml but the test's), without SEGMENT_ variables."""
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("SEGMENT_") and name != "SEGMENT_DATA_DIR"]:
        monkeypatch.delenv(name)


def one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text and len(text) < 600, text
    return text


# --- finding 3: declarations whose view columns would collide -----------------------------------------


def test_every_hostile_declaration_is_refused_in_one_line_or_gives_distinct_view_columns():
    refused = accepted = 0
    for declared in hostile_declarations():
        try:
            dataset = load_settings(dataset=declared).declaration
        except ConfigurationError as error:
            refused += 1
            assert re.search(r"dataset\.columns\.[a-z_0-9]+(\.values)?: ", one_line(error)), str(error)
            continue
        accepted += 1
        for view, columns in view_columns.view_columns(dataset).items():
            names = [name for name, _ in columns]
            assert len(names) == len(set(names)), (view, declared)
            assert all(len(name.encode()) <= 63 for name in names), (view, declared)
    assert refused > 50 and accepted > 50  # the corpus tries both sides


@pytest.mark.parametrize(("example", "message"), [
    ("boolean named customer", "dataset.columns.customer: its view column 'customer_share' in"
                               " current_segment_profiles is a column the view has itself; choose another name"),
    ("segment_color", "dataset.columns.segment_color: its view column 'segment_color' in current_customer_segments"
                      " is a column the view has itself"),
    ("published_date", "dataset.columns.published_date: its view column 'published_date'"),
    ("income and income_k", "dataset.columns.income_k: its view column 'income_index' in current_segment_profiles"
                            " is also made by dataset.columns.income; rename one of them"),
    ("region_west beside West", "its view column 'region_west_share' in current_segment_profiles is also made by"
                                " dataset.columns.region_west; rename one of them"),
])
def test_the_issues_colliding_declarations_are_refused_naming_the_column(example, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_settings(dataset=declaration(ISSUE_EXAMPLES[example]))


@pytest.mark.parametrize(("example", "shares"), [
    ("japanese values", ["region_1_share", "region_2_share", "region_3_share"]),
    ("A-B and a b", ["grade_1_share", "grade_2_share"]),
    ("a 70-character value", ["grade_1_share", "grade_2_share"]),
])
def test_values_that_give_one_name_twice_or_too_long_are_named_by_position(example, shares):
    dataset = load_settings(dataset=declaration(ISSUE_EXAMPLES[example])).declaration
    assert [share.name for share in view_columns.shares(dataset)] == shares


def test_distinct_values_keep_their_names_and_the_mall_keeps_its_columns():
    dataset = parse_dataset(declaration({"region": {"type": "category", "values": ["West", "East", "Café"]}}))
    assert [share.name for share in view_columns.shares(dataset)] == ["region_west_share", "region_east_share",
                                                                      "region_caf_share"]
    profiles = dict(view_columns.view_columns(load_settings().declaration))["current_segment_profiles"]
    assert {"female_share", "male_share", "avg_annual_income_k", "annual_income_index"} <= {name for name, _ in profiles}


def test_a_name_whose_view_columns_pass_63_bytes_is_refused_with_the_limit():
    with pytest.raises(ConfigurationError, match=r"dataset\.columns\.z{57}: its view column 'median_z{57}' in"
                                                 r" current_segment_profiles is 64 bytes long and PostgreSQL keeps only 63"):
        load_settings(dataset=declaration({"z" * 57: {"type": "number"}}))


def test_a_declaration_wider_than_a_postgresql_view_is_refused():
    wide = declaration({f"measure_{n}": {"type": "number"} for n in range(600)})
    with pytest.raises(ConfigurationError, match=r"gives current_segment_profiles 1,815 columns and PostgreSQL allows 1,664"):
        load_settings(dataset=wide)
    with pytest.raises(ConfigurationError, match=r"dataset\.columns\.region\.values: a list of category names"):
        load_settings(dataset=declaration({"region": {"type": "category", "values": []}}))


def test_values_that_only_differ_in_case_are_refused():
    with pytest.raises(ConfigurationError, match=r"dataset\.columns\.region\.values: 'west' repeats 'West'"):
        load_settings(dataset=declaration({"region": {"type": "category", "values": ["West", "west"]}}))


def test_the_generator_refuses_what_validation_refuses():
    from segmentation.publish import views

    dataset = parse_dataset(declaration({"income": {"type": "number"}}))
    clashing = dataset.__class__(dataset.id_column, dataset.id_type, dataset.columns + (
        parse_dataset(declaration({"income_k": {"type": "number"}})).columns))
    with pytest.raises(ValueError, match="income_index"):
        views.view_statements(views.Target(1, "default"), clashing)


# --- finding 6: a password with an unencoded @ ----------------------------------------------------------


@pytest.mark.parametrize(("url", "host", "port", "password"), [
    ("postgresql://root:ab@Zq9-S3cr3t@127.0.0.1:5999/db", "127.0.0.1", 5999, "ab@Zq9-S3cr3t"),
    ("postgresql://u:p/a:s@s@db.example.com/shop?sslmode=require", "db.example.com", None, "p/a:s@s"),
    ("postgresql://u:p%40ss@h:5432/db", "h", 5432, "p@ss"),
    ("postgresql://u:50%off@h/db", "h", None, "50%off"),
    ("postgres://u@h/db", "h", None, None),
])
def test_the_password_ends_at_the_last_at_sign_before_the_host(url, host, port, password):
    import sqlalchemy as sa

    parsed = sa.make_url(db.sqlalchemy_url(url))
    assert (parsed.host, parsed.port, parsed.password) == (host, port, password)


def test_a_url_that_cannot_be_read_is_refused_without_any_part_of_it():
    with pytest.raises(ConfigurationError) as caught:
        load_settings(database_url="postgresql://root:S3cr3t-pw@host:5x99/db")
    assert "percent-encode" in one_line(caught.value) and "S3cr3t" not in str(caught.value)


# --- finding 7: every setting validated for range ------------------------------------------------------


@pytest.mark.parametrize(("setting", "value"), HOSTILE_SETTINGS)
def test_a_setting_out_of_range_is_refused_naming_it_and_the_file(tmp_path, setting, value):
    (tmp_path / "segment.toml").write_text(f"{setting} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    text = one_line(caught.value)
    assert text.startswith("invalid settings: ") and setting in text
    assert "segment.toml" in text or setting in ("as_of", "source")


@pytest.mark.parametrize("bounds", HOSTILE_RANGES)
def test_a_column_range_that_is_not_a_finite_number_is_refused(bounds):
    with pytest.raises(ConfigurationError, match=r"dataset\.columns\.income(\.min|\.max)?: "):
        load_settings(dataset=declaration({"income": {"type": "number", **bounds}}))


def test_a_setting_from_the_environment_is_named_as_such(monkeypatch):
    monkeypatch.setenv("SEGMENT_RANDOM_STATE", str(2**40))
    with pytest.raises(ConfigurationError, match=r"random_state: .*\(in environment variable SEGMENT_RANDOM_STATE\)"):
        load_settings()


# --- finding 8: the smaller ones ---------------------------------------------------------------------


def test_an_unknown_key_names_the_file_and_the_likely_key(tmp_path):
    (tmp_path / "segment.toml").write_text("k_maxx = 8\n[dataset]\nid_column = 'ID'\n"
                                           "[dataset.columns.income]\ntype = 'number'\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"segment\.toml: unknown setting 'k_maxx'; did you mean k_max\?"):
        load_settings()
    (tmp_path / "segment.toml").write_text("[dataset]\nid_colum = 'ID'\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"dataset: unknown key 'id_colum'; did you mean id_column\? \(in segment\.toml\)"):
        load_settings()


def test_escape_sequences_in_texts_users_write_are_refused():
    with pytest.raises(ValueError, match=r"recommendations\[1\]\.text: contains the control character U\+001B \(escape\)"):
        parse_rules([{"when": {"income": "high"}, "text": "\x1b[2J\x1b[31mBuy now"}])
    with pytest.raises(ConfigurationError, match=r"dataset\.columns\.income\.label: contains the control character U\+202E"):
        load_settings(dataset=declaration({"income": {"type": "number", "label": "in\u202ecome"}}))


def test_what_is_printed_never_drives_the_terminal(capsys):
    assert printable("mostly \x1b[2J\x1b]0;owned\x07 \u202eevil é 東京") == (
        "mostly \\x1b[2J\\x1b]0;owned\\x07 \\u202eevil é 東京")
    cli.console.print("segment \x1b[31mred\x1b[0m")
    table = cli.Table()
    table.add_column("name")
    cli._add_row(table, "Mostly \x1b[2J")
    cli.console.print(table)
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\\x1b[31mred" in printed and "\\x1b[2J" in printed


def test_failures_are_told_without_python_class_names(capsys):
    assert describe(OSError(errno.EIO, "Input/output error", "customers.csv")) == (
        "customers.csv: input/output error (errno 5); the disk or network share failed to read or write it;"
        " copy the file to a local disk and try again")
    assert describe(FileNotFoundError(errno.ENOENT, "No such file or directory", "x.html")).startswith(
        "x.html: no such file or directory (errno 2)")

    @cli.command
    def failing():
        raise OSError(errno.EIO, "Input/output error", "customers.csv")

    with pytest.raises(typer.Exit) as caught:
        failing()
    assert caught.value.exit_code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: customers.csv: input/output error (errno 5)") and "OSError" not in error


def test_an_unknown_schema_revision_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigurationError) as caught, db._known_revision("0099"):
        raise alembic_errors.CommandError("Can't locate revision identified by '0099'")
    text = one_line(caught.value)
    assert text.startswith("schema revision '0099' (asked for) is not one this version of the job knows")
    assert "0001" in text and "CommandError" not in text
