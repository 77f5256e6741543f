"""Hostile URLs, settings and paths through the `segment` command (issue 22): one `error:` line
naming what to fix, the right exit code, no secret printed, no run id used, nothing written."""

import pytest

from tests.e2e.test_cli import environment, query, segment

pytestmark = pytest.mark.e2e


def nothing_written(url):
    return query(url, "select (select count(*) from segmentation_internal.runs),"
                      " (select count(*) from segmentation_internal.import_batches)") == [(0, 0)]


def test_a_password_with_an_unencoded_at_sign_is_neither_printed_nor_taken_for_the_host():
    env = environment(DATABASE_URL="postgresql://root:ab@Zq9-S3cr3t@127.0.0.1:5999/db")
    result = segment("runs", env=env)
    assert result.returncode == 7
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot connect to 127.0.0.1:5999 as root: ")
    assert "Zq9" not in result.stdout + result.stderr and "S3cr3t" not in result.stdout + result.stderr


def test_a_missing_csv_is_refused_before_a_run_id_is_used(database_url, tmp_path):
    env = environment(DATABASE_URL=database_url)
    result = segment("run", "--csv", str(tmp_path / "missing.csv"), env=env)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.csv'} (--csv): no such file; check the path"
    assert "does not start with the file" not in result.stderr
    assert nothing_written(database_url)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SEGMENT_LOCK_WAIT_SECONDS", "inf", "lock_wait_seconds: Input should be a finite number (in environment variable"
                                         " SEGMENT_LOCK_WAIT_SECONDS)"),
    ("SEGMENT_RANDOM_STATE", str(2**40), "random_state: Input should be less than 4294967296"),
    ("SEGMENT_ORDER_DATE_TOLERANCE_DAYS", "-3", "order_date_tolerance_days: Input should be greater than or equal to 0"),
])
def test_a_setting_out_of_range_stops_the_run_before_any_work(database_url, customers_csv, variable, value, message):
    env = environment(DATABASE_URL=database_url, **{variable: value})
    result = segment("run", "--csv", str(customers_csv), env=env)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("error:") == 1
    assert nothing_written(database_url)


def test_an_unknown_key_in_the_toml_file_names_the_file_and_the_likely_key(database_url, customers_csv, tmp_path):
    config = tmp_path / "segment.toml"
    config.write_text("k_maxx = 8\n", encoding="utf-8")
    result = segment("run", "--csv", str(customers_csv), env=environment(DATABASE_URL=database_url,
                                                                           SEGMENT_CONFIG=str(config)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: invalid settings: {config}: unknown setting 'k_maxx'; did you mean k_max?")


def test_an_unknown_schema_revision_is_one_line_without_alembics_class_name(database_url):
    result = segment("db", "downgrade", "0099", env=environment(DATABASE_URL=database_url))
    assert result.returncode == 2
    assert "error: schema revision '0099' (asked for) is not one this version of the job knows" in result.stderr
    assert "CommandError" not in result.stderr and "Traceback" not in result.stderr


def test_a_report_written_where_no_file_can_be_says_so_without_a_class_name(database_url, customers_csv, tmp_path):
    env = environment(DATABASE_URL=database_url, SEGMENT_WRITE_REPORT="false")
    assert segment("run", "--csv", str(customers_csv), env=env).returncode == 0
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    result = segment("report", "--out", str(blocked / "report.html"), env=env)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {blocked}") and "errno" in line and "Error:" not in line, line


def test_escape_sequences_in_the_data_never_reach_the_terminal(database_url, tmp_path):
    declared = tmp_path / "segment.toml"
    declared.write_text('features = ["income", "city"]\n[dataset]\nid_column = "ID"\n'
                        '[dataset.columns.income]\ntype = "number"\nfrom = "Income"\n'
                        '[dataset.columns.city]\ntype = "category"\nfrom = "City"\n', encoding="utf-8")
    escapes = "\x1b[2J\x1b]0;owned\x07"  # clear the screen, set the window title
    lines = ["ID,Income,City"] + [f"{n},{10 + (n % 2) * 90 + n % 7},{escapes if n % 2 else 'Paris'}" for n in range(1, 81)]
    path = tmp_path / "customers.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = segment("run", "--csv", str(path), env=environment(DATABASE_URL=database_url, SEGMENT_CONFIG=str(declared),
                                                               SEGMENT_K="2", SEGMENT_FORCE_PUBLISH="true"))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr and "\\x1b[2J" in result.stdout
