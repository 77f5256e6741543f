"""Failures say what happened: an unreachable server at start, a server error mid-run that is not a lost connection.

The error here is raised on purpose, in-process and fast; tests/e2e/test_server_faults.py fills a real disk.
"""

import pytest
import sqlalchemy as sa

from segmentation import db, features
from segmentation.errors import DatabaseUnreachable
from segmentation.pipeline import run_with_retries
from segmentation.settings import load_settings


def test_a_server_that_never_answered_is_one_error_at_once_not_retries():
    settings = load_settings(database_url="postgresql://nobody@127.0.0.1:1/none", db_retries=3, db_retry_delay_seconds=5)
    with pytest.raises(DatabaseUnreachable, match=r"cannot connect to 127.0.0.1:1 as nobody: .*refused"):
        with db.database(settings):
            pass


def test_a_server_error_that_is_not_a_lost_connection_fails_the_run_once(engine, customers_csv, monkeypatch):
    def disk_full(connection, *_):
        connection.exec_driver_sql(
            "do $$ begin raise exception 'could not extend file \"base/1/2\": No space left on device'"
            " using errcode = 'disk_full'; end $$"
        )

    monkeypatch.setattr(features, "count_active_customers", disk_full)
    settings = load_settings(database_url="postgresql://unused@localhost/unused", write_report=False,
                             db_retries=3, db_retry_delay_seconds=0)
    with pytest.raises(sa.exc.DBAPIError) as raised:
        run_with_retries(engine, settings, customers_csv)
    assert "No space left on device" in db.server_message(raised.value)
    with engine.connect() as connection:
        runs = connection.execute(sa.text("select status, error from segmentation_internal.runs")).all()
    assert len(runs) == 1 and runs[0].status == "failed" and "No space left" in runs[0].error
