"""Operations: per-run partitions of customer_segments (cheap retention), abandoned imports,
and the read-only role for BI tools.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

`customer_segments` becomes a table partitioned by run_id (one partition per run, named
customer_segments_r<run_id>), so dropping an old run's rows is a DROP TABLE rather than a
mass DELETE. The two views that read it are recreated unchanged (own copies below) and get
their comments back from the migrations that wrote them.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

READER_ROLE = "segmentation_reader"
VIEWS = (
    "current_customer_segments",
    "current_segment_profiles",
    "run_history",
    "segment_transitions",
    "segment_profile_history",
)

COLUMNS = """
    run_id bigint not null,
    customer_id bigint not null,
    segment_id integer not null,
    distance_to_centroid double precision not null,
    gender text,
    age smallint,
    annual_income_k numeric,
    spending_score smallint,
    second_segment_id integer,
    margin_to_second double precision,
    is_outlier boolean not null default false
"""

CURRENT_CUSTOMER_SEGMENTS = """
create or replace view segmentation.current_customer_segments as
-- grain: one row per customer of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    assigned.customer_id,
    assigned.segment_id,
    profile.segment_name,
    assigned.gender,
    assigned.age,
    assigned.annual_income_k,
    assigned.spending_score,
    assigned.distance_to_centroid,
    assigned.run_id,
    latest_run.published_at,
    assigned.second_segment_id,
    assigned.margin_to_second,
    assigned.is_outlier
from latest_run
join segmentation.customer_segments as assigned
    on assigned.run_id = latest_run.run_id
join segmentation.segment_profiles as profile
    on profile.run_id = assigned.run_id
    and profile.segment_id = assigned.segment_id
"""

SEGMENT_TRANSITIONS = """
create or replace view segmentation.segment_transitions as
-- grain: one row per (previous segment, current segment) pair between the two latest published runs
with published as (
    select
        run_id,
        row_number() over (order by published_at desc, run_id desc) as recency
    from segmentation.runs
    where status = 'published'
),
current_run as (
    select run_id from published where recency = 1
),
previous_run as (
    select run_id from published where recency = 2
),
previous_assignments as (
    select customer_id, segment_id
    from segmentation.customer_segments
    where run_id = (select run_id from previous_run)
),
current_assignments as (
    select customer_id, segment_id
    from segmentation.customer_segments
    where run_id = (select run_id from current_run)
),
moves as (
    select
        previous_assignments.segment_id as from_segment_id,
        current_assignments.segment_id as to_segment_id,
        count(*) as customer_count
    from previous_assignments
    full join current_assignments
        on current_assignments.customer_id = previous_assignments.customer_id
    group by 1, 2
)
select
    (select run_id from previous_run) as from_run_id,
    (select run_id from current_run) as to_run_id,
    moves.from_segment_id,
    from_profile.segment_name as from_segment_name,
    moves.to_segment_id,
    to_profile.segment_name as to_segment_name,
    moves.customer_count,
    cast(moves.customer_count as double precision)
        / sum(moves.customer_count) over (partition by moves.from_segment_id) as share_of_from_segment
from moves
left join segmentation.segment_profiles as from_profile
    on from_profile.run_id = (select run_id from previous_run)
    and from_profile.segment_id = moves.from_segment_id
left join segmentation.segment_profiles as to_profile
    on to_profile.run_id = (select run_id from current_run)
    and to_profile.segment_id = moves.to_segment_id
"""

SEGMENT_PROFILE_HISTORY = """
create view segmentation.segment_profile_history as
-- grain: one row per segment of every published run, oldest first
select
    runs.run_id,
    runs.published_at,
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    profile.avg_age,
    profile.avg_annual_income_k,
    profile.avg_spending_score,
    profile.female_share,
    profile.centroid_shift
from segmentation.runs as runs
join segmentation.segment_profiles as profile
    on profile.run_id = runs.run_id
where runs.status = 'published'
order by runs.published_at, runs.run_id, profile.segment_id
"""

#: Views this migration (re)creates: the first two unchanged from migration 0002.
VIEW_SQL = {
    "current_customer_segments": CURRENT_CUSTOMER_SEGMENTS,
    "segment_transitions": SEGMENT_TRANSITIONS,
    "segment_profile_history": SEGMENT_PROFILE_HISTORY,
}

PROFILE_HISTORY_COMMENTS = (
    "Grain: one row per segment of every published run, oldest first. Segment sizes and profiles over time.",
    {
        "run_id": "Published run (see run_history).",
        "published_at": "When the run was published.",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        "customer_count": "Customers in the segment in that run.",
        "customer_share": "Share of that run's customers (0..1).",
        "avg_age": "Mean age in years.",
        "avg_annual_income_k": "Mean annual income in thousands of dollars.",
        "avg_spending_score": "Mean spending score (1..100).",
        "female_share": "Share of customers with gender Female among those with a known gender (0..1).",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
    },
)


def _load(file_name: str):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        f"segmentation_migration_{file_name[:4]}", Path(__file__).with_name(file_name)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _earlier_comments() -> dict[str, tuple[str, dict[str, str]]]:
    """View and column comments as migrations 0001 and 0002 wrote them."""
    first, second = _load("0001_initial_schema.py"), _load("0002_model_outputs.py")
    comments = {view: (text, dict(columns)) for view, (text, columns) in first.VIEW_COMMENTS.items()}
    for view, columns in second.VIEW_COMMENTS.items():
        text, known = comments.get(view, (second.VIEW_DESCRIPTIONS.get(view), {}))
        comments[view] = (text, {**known, **columns})
    comments["segment_profile_history"] = PROFILE_HISTORY_COMMENTS
    return comments


def _comment(kind: str, name: str, text: str) -> None:
    # Comments are constants of the migrations, never user data; quote them as SQL literals.
    op.execute(f"comment on {kind} {name} is '{text.replace(chr(39), chr(39) * 2)}'")


def _recreate_views(views=tuple(VIEW_SQL)) -> None:
    comments = _earlier_comments()
    for view in views:
        sql = VIEW_SQL[view]
        op.execute(sql)
        text, columns = comments[view]
        _comment("view", f"segmentation.{view}", text)
        for column, column_text in columns.items():
            _comment("column", f"segmentation.{view}.{column}", column_text)


def upgrade() -> None:
    op.execute(
        """
        alter table segmentation.import_batches drop constraint import_batches_status_check;
        alter table segmentation.import_batches add constraint import_batches_status_check
            check (status in ('running', 'succeeded', 'failed', 'abandoned'));
        """
    )
    op.execute("drop view segmentation.segment_transitions")
    op.execute("drop view segmentation.current_customer_segments")
    op.execute("alter table segmentation.customer_segments rename to customer_segments_unpartitioned")
    op.execute("alter index segmentation.customer_segments_pkey rename to customer_segments_unpartitioned_pkey")
    op.execute(
        f"create table segmentation.customer_segments ({COLUMNS}, primary key (run_id, customer_id))"
        " partition by list (run_id)"
    )
    op.execute(
        """
        do $$
        declare
            found record;
        begin
            for found in select distinct run_id from segmentation.customer_segments_unpartitioned loop
                execute format(
                    'create table segmentation.%I partition of segmentation.customer_segments for values in (%s)',
                    'customer_segments_r' || found.run_id, found.run_id
                );
            end loop;
        end
        $$;
        insert into segmentation.customer_segments select * from segmentation.customer_segments_unpartitioned;
        drop table segmentation.customer_segments_unpartitioned;
        """
    )
    _comment(
        "table",
        "segmentation.customer_segments",
        "One row per run and customer: the assigned segment and the fitted attributes."
        " One partition per run (customer_segments_r<run_id>).",
    )
    _recreate_views()
    # A group role for BI tools: may read the views and nothing else. Roles are shared by
    # every database of the server, hence "if not exists".
    op.execute(
        f"""
        do $$
        begin
            if not exists (select from pg_roles where rolname = '{READER_ROLE}') then
                create role {READER_ROLE} nologin;
            end if;
        end
        $$;
        grant usage on schema segmentation to {READER_ROLE};
        grant select on {", ".join("segmentation." + view for view in VIEWS)} to {READER_ROLE};
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        revoke select on {", ".join("segmentation." + view for view in VIEWS)} from {READER_ROLE};
        revoke usage on schema segmentation from {READER_ROLE};
        do $$
        begin
            drop role {READER_ROLE};
        exception when dependent_objects_still_exist or object_in_use then
            raise notice 'role {READER_ROLE} still has grants in another database; kept';
        end
        $$;
        """
    )
    op.execute("drop view segmentation.segment_profile_history")
    op.execute("drop view segmentation.segment_transitions")
    op.execute("drop view segmentation.current_customer_segments")
    op.execute("alter table segmentation.customer_segments rename to customer_segments_partitioned")
    op.execute(f"create table segmentation.customer_segments ({COLUMNS})")
    op.execute(
        """
        insert into segmentation.customer_segments select * from segmentation.customer_segments_partitioned;
        drop table segmentation.customer_segments_partitioned;
        alter table segmentation.customer_segments add primary key (run_id, customer_id);
        """
    )
    _recreate_views(("current_customer_segments", "segment_transitions"))
    op.execute(
        """
        update segmentation.import_batches set status = 'failed' where status = 'abandoned';
        alter table segmentation.import_batches drop constraint import_batches_status_check;
        alter table segmentation.import_batches add constraint import_batches_status_check
            check (status in ('running', 'succeeded', 'failed'));
        """
    )
