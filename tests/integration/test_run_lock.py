"""The run lock: a run that lost it never publishes, and a read-only role can neither block nor fake it."""

import threading
import uuid

import pytest
import sqlalchemy as sa

from segmentation import db, pipeline
from segmentation.errors import RunLocked, RunLockLost
from segmentation.pipeline import run_once
from segmentation.settings import load_settings


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False, **overrides)


def query(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def lock_holder(engine):
    return query(
        engine,
        "select pid from pg_locks where locktype = 'relation' and granted and mode = 'ExclusiveLock'"
        " and relation = to_regclass('segmentation_internal.run_lock')"
        " and database = (select oid from pg_database where datname = current_database())",
    )


def test_a_run_that_lost_its_lock_never_publishes_and_the_next_run_does(engine, customers_csv, monkeypatch):
    fitting, release = threading.Event(), threading.Event()
    real_segment = pipeline.segment

    def slow_segment(*args, **kwargs):
        if threading.current_thread().name == "first":
            fitting.set()
            assert release.wait(60)
        return real_segment(*args, **kwargs)

    monkeypatch.setattr(pipeline, "segment", slow_segment)
    outcome = {}

    def first_run():
        try:
            outcome["first"] = run_once(engine, settings(), customers_csv)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            outcome["first"] = error

    thread = threading.Thread(target=first_run, name="first")
    thread.start()
    assert fitting.wait(60)
    [(pid,)] = lock_holder(engine)
    with engine.connect() as connection:  # the lock's session ends, as on an idle timeout or a crash
        connection.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid})
        connection.commit()
    second = run_once(engine, settings(), customers_csv)
    release.set()
    thread.join(60)
    assert isinstance(outcome["first"], RunLockLost)
    assert "lost the run lock" in str(outcome["first"]) or "no longer running" in str(outcome["first"])
    statuses = dict(query(engine, "select run_id, status from segmentation_internal.runs"))
    assert statuses[second.run_id] == "published"
    assert sorted(statuses.values()) == ["abandoned", "published"]
    assert query(engine, "select distinct run_id from segmentation.current_customer_segments") == [(second.run_id,)]


def test_the_check_in_the_publish_transaction_sees_a_lost_lock(engine):
    with db.run_lock(engine, wait_seconds=0) as lock:
        with engine.begin() as connection:
            lock.check(connection)  # held: no error
            # with a timeout, pg_terminate_backend waits until the backend is gone (else it only signals it)
            connection.execute(sa.text("select pg_terminate_backend(:pid, 5000)"), {"pid": lock.backend_pid})
        with engine.begin() as connection, pytest.raises(RunLockLost, match="lost the run lock"):
            lock.check(connection)


def test_a_second_run_waits_or_exits_clearly(engine):
    with db.run_lock(engine, wait_seconds=0):
        with pytest.raises(RunLocked, match="another segmentation run is in progress"):
            with db.run_lock(engine, wait_seconds=0.3):
                pass


def test_a_read_only_role_can_neither_block_nor_fake_the_run_lock(engine, database_url, customers_csv):
    role = f"bi_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"create role {role} login")
        connection.exec_driver_sql(f"grant segmentation_reader to {role}")
    reader = sa.create_engine(sa.make_url(database_url).set(username=role, password=None), poolclass=sa.pool.NullPool)
    try:
        with reader.connect() as connection:
            connection.execute(sa.text("select pg_advisory_lock(:key)"), {"key": db.RUN_LOCK_KEY})  # the old way to block
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                with connection.begin_nested():
                    connection.exec_driver_sql("lock table segmentation_internal.run_lock in exclusive mode nowait")
            outcome = run_once(engine, settings(), customers_csv)  # runs while the reader holds what it can
            assert outcome.status == "published"
    finally:
        reader.dispose()
        with engine.begin() as connection:
            connection.exec_driver_sql(f"drop owned by {role}")
            connection.exec_driver_sql(f"drop role {role}")
