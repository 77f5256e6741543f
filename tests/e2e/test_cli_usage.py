"""Usage errors and settings given the wrong way follow the one-line `error:` contract too."""

import pytest
import sqlalchemy as sa

from jobs.cli import connection_string
from tests.e2e.test_cli import environment, segment

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "--csv", "."), "Invalid value for '--csv': file '.' is a directory (see '"),
        (("run", "--k", "many"), "Invalid value for '--k'"),
        (("run", "--bogus"), "No such option: --bogus"),
        (("run", "--force-publish=maybe"), "Option '--force-publish' does not take a value"),
        (("nonsense",), "No such command 'nonsense'"),
    ],
)
def test_a_usage_error_is_one_error_line_and_exit_code_2(args, expected):
    result = segment(*args, env=environment())
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert expected in result.stderr and result.stdout == ""


def test_help_shows_flags_as_flags():
    result = segment("run", "--help", env=environment())
    assert result.returncode == 0
    assert "<bool>" not in result.stdout
    flag = next(line for line in result.stdout.splitlines() if "--force-publish" in line)
    assert flag.split()[1] == "publish"  # the help text follows the flag, no value placeholder


def test_no_command_prints_the_help():
    result = segment(env=environment())
    assert result.returncode == 0 and "Commands:" in result.stdout and result.stderr == ""


def test_a_setting_that_should_be_json_says_so():
    result = segment("runs", env=environment(SEGMENT_COLUMN_MAP="not json"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid settings: SEGMENT_COLUMN_MAP must be JSON, for example '{")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://postgres:@/postgres?host=/tmp/x", "postgresql://postgres@/postgres?host=%2Ftmp%2Fx"),
        ("postgresql+psycopg://postgres@/postgres?host=/tmp/x", "postgresql://postgres@/postgres?host=%2Ftmp%2Fx"),
        ("postgresql+psycopg://bob:s3cret@db:5432/crm", "postgresql://bob:***@db:5432/crm"),
    ],
)
def test_db_serve_prints_the_connection_string_as_the_readme_shows_it(url, shown):
    assert connection_string(sa.make_url(url)) == shown


def test_features_with_few_distinct_values_are_said_once_in_words(database_url, customers_csv):
    result = segment("run", "--csv", str(customers_csv), env=environment(DATABASE_URL=database_url, SEGMENT_FEATURES="gender"))
    assert result.returncode == 0, result.stderr
    assert "ConvergenceWarning" not in result.stderr
    assert result.stderr.count("the features have few distinct values (gender)") == 1
