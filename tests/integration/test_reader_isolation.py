"""The read-only role sees only what the views show, even with a leaky function of its own."""

import uuid

import pytest
import sqlalchemy as sa

from segmentation.errors import RunHeld
from segmentation.pipeline import run_once
from segmentation.settings import load_settings

READER_VIEWS = ("current_customer_segments", "current_segment_profiles", "current_segment_features",
                "segment_profile_history", "segment_transitions", "segment_transitions_history")


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", write_report=False, **overrides)


def test_a_leaky_function_of_the_reader_never_sees_held_or_older_runs(engine, database_url, customers_csv):
    earlier = run_once(engine, settings(), customers_csv)
    published = run_once(engine, settings(), customers_csv)  # the transition views need two published runs
    with pytest.raises(RunHeld):
        run_once(engine, settings(min_silhouette=0.99), customers_csv)  # stored with status held
    role = f"bi_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"create role {role} login")
        connection.exec_driver_sql(f"grant segmentation_reader to {role}")
    reader = sa.create_engine(sa.make_url(database_url).set(username=role, password=None), poolclass=sa.pool.NullPool)
    seen = {view: [] for view in READER_VIEWS}
    try:
        with reader.connect() as connection:
            raw = connection.connection.driver_connection
            current = []
            raw.add_notice_handler(lambda notice: seen[current[-1]].append(notice.message_primary))
            # what an attacker would do to make the planner scan whole tables with their filter first
            for setting in ("enable_indexscan", "enable_bitmapscan", "enable_partition_pruning", "enable_hashjoin"):
                connection.exec_driver_sql(f"set {setting} = off")
            connection.exec_driver_sql(
                "create function pg_temp.leak(run bigint) returns boolean language plpgsql cost 0.0000001 as"
                " $$ begin raise notice 'run %%', run; return true; end $$"
            )
            for view in READER_VIEWS:
                current.append(view)
                column = "to_run_id" if view.startswith("segment_transitions") else "run_id"
                connection.exec_driver_sql(f"select * from segmentation.{view} where pg_temp.leak({column})").all()
    finally:
        reader.dispose()
        with engine.begin() as connection:
            connection.exec_driver_sql(f"drop owned by {role}")
            connection.exec_driver_sql(f"drop role {role}")
    every_published = {f"run {earlier.run_id}", f"run {published.run_id}"}
    for view in READER_VIEWS:
        assert seen[view], f"the function ran on {view}"
        if view == "segment_profile_history":  # its grain is every published run
            assert set(seen[view]) == every_published
        else:
            assert set(seen[view]) == {f"run {published.run_id}"}, view  # never the held run's rows
