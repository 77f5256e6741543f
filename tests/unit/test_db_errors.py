"""Database errors told apart: a lost connection is retried, anything else fails once; no password is ever shown."""

import psycopg
import pytest
import sqlalchemy as sa

from segmentation import db


def wrapped(error: Exception, invalidated: bool = False) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError.instance("select 1", {}, error, psycopg.Error, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.errors.ConnectionFailure("connection failure"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.DiskFull("could not extend file: No space left on device"), False),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (psycopg.errors.InsufficientPrivilege("permission denied for table customers"), False),
    ],
)
def test_only_a_lost_connection_counts_as_lost(error, lost):
    assert db.connection_lost(wrapped(error)) is lost
    assert db.connection_lost(error) is lost  # psycopg's own, from the raw connection the import COPYs through


def test_the_server_message_is_one_line_without_sqlalchemy_boilerplate():
    error = wrapped(psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device\nHINT: x'))
    message = db.server_message(error)
    assert "\n" not in message and "sqlalche.me" not in message and "No space left on device" in message
    assert db.server_message(error.orig) == message


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://bob:s3cret@db.example:5432/x",
        "postgresql://bob:s3@cret@db.example/x",
        "postgresql://bob@db.example/x?password=s3cret&sslmode=require",
        "host=db.example user=bob password=s3cret dbname=x",
        "host=db.example user=bob password='s3cret' dbname=x",
    ],
)
def test_no_password_survives_redaction(text):
    shown = db.redact(text)
    assert "s3cret" not in shown and "cret" not in shown
    assert "db.example" in shown


def test_a_database_folder_name_says_which_database_on_which_server_in_safe_characters():
    assert db.database_folder_name(sa.make_url("postgresql://u@db.example.com:6543/shop")) == "shop_on_db.example.com-6543"
    assert db.database_folder_name(sa.make_url("postgresql://postgres@/postgres?host=/tmp/x")) == "postgres_on_local"
    assert db.database_folder_name(sa.make_url("postgresql://u@h/a b/c")) == "a_b_c_on_h"
