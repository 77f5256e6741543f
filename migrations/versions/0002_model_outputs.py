"""Richer model outputs: every k criterion, per-customer margins and outliers, drift,
segment transitions, health gate and report path.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Views are replaced with columns appended (BI questions built on the old columns keep
working). This file carries its own copies of the new and of the previous view SQL.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = """
alter table segmentation.k_evaluations
    add column gap double precision,
    add column gap_sd double precision,
    add column stability_ari double precision,
    add column gap_choice boolean not null default false,
    add column votes integer not null default 0;

alter table segmentation.runs
    add column size_psi double precision,
    add column max_centroid_shift double precision,
    add column n_outliers bigint,
    add column report_path text;

alter table segmentation.segment_profiles
    add column age_index double precision,
    add column annual_income_index double precision,
    add column spending_score_index double precision,
    add column female_share_index double precision,
    add column distinguishing_features text,
    add column centroid_shift double precision,
    add column previous_customer_count bigint;

alter table segmentation.customer_segments
    add column second_segment_id integer,
    add column margin_to_second double precision,
    add column is_outlier boolean not null default false;
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

CURRENT_SEGMENT_PROFILES = """
create or replace view segmentation.current_segment_profiles as
-- grain: one row per segment of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    profile.avg_age,
    profile.avg_annual_income_k,
    profile.avg_spending_score,
    profile.female_share,
    profile.recommendation,
    profile.run_id,
    latest_run.published_at,
    profile.median_age,
    profile.median_annual_income_k,
    profile.median_spending_score,
    profile.age_index,
    profile.annual_income_index,
    profile.spending_score_index,
    profile.female_share_index,
    profile.distinguishing_features,
    profile.centroid_shift,
    profile.previous_customer_count
from latest_run
join segmentation.segment_profiles as profile
    on profile.run_id = latest_run.run_id
"""

RUN_HISTORY = """
create or replace view segmentation.run_history as
-- grain: one row per run, newest first
select
    runs.run_id,
    runs.started_at,
    runs.finished_at,
    runs.status,
    runs.k,
    runs.silhouette,
    runs.n_customers,
    runs.published_at,
    runs.rationale,
    runs.features,
    runs.error,
    runs.size_psi,
    runs.max_centroid_shift,
    runs.n_outliers,
    runs.report_path
from segmentation.runs as runs
order by runs.run_id desc
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

#: Definitions of the views this migration creates or replaces.
VIEW_SQL = {
    "current_customer_segments": CURRENT_CUSTOMER_SEGMENTS,
    "current_segment_profiles": CURRENT_SEGMENT_PROFILES,
    "run_history": RUN_HISTORY,
    "segment_transitions": SEGMENT_TRANSITIONS,
}

#: The views as migration 0001 left them, restored by downgrade().
PREVIOUS_VIEW_SQL = {
    "current_customer_segments": """
create view segmentation.current_customer_segments as
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
    latest_run.published_at
from latest_run
join segmentation.customer_segments as assigned
    on assigned.run_id = latest_run.run_id
join segmentation.segment_profiles as profile
    on profile.run_id = assigned.run_id
    and profile.segment_id = assigned.segment_id
""",
    "current_segment_profiles": """
create view segmentation.current_segment_profiles as
-- grain: one row per segment of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    profile.avg_age,
    profile.avg_annual_income_k,
    profile.avg_spending_score,
    profile.female_share,
    profile.recommendation,
    profile.run_id,
    latest_run.published_at
from latest_run
join segmentation.segment_profiles as profile
    on profile.run_id = latest_run.run_id
""",
    "run_history": """
create view segmentation.run_history as
-- grain: one row per run, newest first
select
    runs.run_id,
    runs.started_at,
    runs.finished_at,
    runs.status,
    runs.k,
    runs.silhouette,
    runs.n_customers,
    runs.published_at,
    runs.rationale,
    runs.features,
    runs.error
from segmentation.runs as runs
order by runs.run_id desc
""",
}

VIEW_COMMENTS = {
    "current_customer_segments": {
        "second_segment_id": "Second-nearest segment: where the customer would go next.",
        "margin_to_second": "Distance to the second-nearest centre minus distance to its own (scaled units); small = borderline.",
        "is_outlier": "True when the customer is far from its own centre: beyond Q3 + 3 x IQR of its segment's distances.",
    },
    "current_segment_profiles": {
        "median_age": "Median age in years.",
        "median_annual_income_k": "Median annual income in thousands of dollars.",
        "median_spending_score": "Median spending score (1..100).",
        "age_index": "Segment mean age as a percentage of the overall mean (100 = average).",
        "annual_income_index": "Segment mean income as a percentage of the overall mean (100 = average).",
        "spending_score_index": "Segment mean spending score as a percentage of the overall mean (100 = average).",
        "female_share_index": "Segment female share as a percentage of the overall share (100 = average).",
        "distinguishing_features": "The clustering features that set the segment apart, in words.",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units); null if new.",
        "previous_customer_count": "Customers in the same segment id in the previous published run; null if new.",
    },
    "run_history": {
        "size_psi": "Population stability index of segment sizes against the previous published run.",
        "max_centroid_shift": "Largest centre shift of a matched segment against the previous published run (scaled units).",
        "n_outliers": "Customers flagged as outliers in this run.",
        "report_path": "Path of the run's HTML report.",
    },
    "segment_transitions": {
        "from_run_id": "Previous published run.",
        "to_run_id": "Latest published run.",
        "from_segment_id": "Segment in the previous run; null for customers new in the latest run.",
        "from_segment_name": "Name of that segment in the previous run.",
        "to_segment_id": "Segment in the latest run; null for customers no longer segmented.",
        "to_segment_name": "Name of that segment in the latest run.",
        "customer_count": "Customers who moved from the first segment to the second.",
        "share_of_from_segment": "customer_count as a share of the previous segment's customers (0..1).",
    },
}
VIEW_DESCRIPTIONS = {
    "segment_transitions": (
        "Grain: one row per (previous segment, current segment) pair between the two latest"
        " published runs. Customers moved between segments."
    ),
}


def _comment(kind: str, name: str, text: str) -> None:
    # Comments are constants of this file, never user data; quote them as SQL literals.
    op.execute(f"comment on {kind} {name} is '{text.replace(chr(39), chr(39) * 2)}'")


def upgrade() -> None:
    op.execute(COLUMNS)
    for view_sql in VIEW_SQL.values():
        op.execute(view_sql)
    for view, text in VIEW_DESCRIPTIONS.items():
        _comment("view", f"segmentation.{view}", text)
    for view, columns in VIEW_COMMENTS.items():
        for column, text in columns.items():
            _comment("column", f"segmentation.{view}.{column}", text)


def _previous_comments() -> dict:
    """Migration 0001's view comments, to restore them on the views recreated below."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("0001_initial_schema.py")
    spec = importlib.util.spec_from_file_location("segmentation_migration_0001", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VIEW_COMMENTS


def downgrade() -> None:
    op.execute("drop view segmentation.segment_transitions")
    previous_comments = _previous_comments()
    for view, sql in PREVIOUS_VIEW_SQL.items():
        # a view cannot drop columns with create or replace: drop it, then create the old one
        op.execute(f"drop view segmentation.{view}")
        op.execute(sql)
        view_text, columns = previous_comments[view]
        _comment("view", f"segmentation.{view}", view_text)
        for column, text in columns.items():
            _comment("column", f"segmentation.{view}.{column}", text)
    op.execute(
        """
        alter table segmentation.customer_segments
            drop column second_segment_id, drop column margin_to_second, drop column is_outlier;
        alter table segmentation.segment_profiles
            drop column age_index, drop column annual_income_index, drop column spending_score_index,
            drop column female_share_index, drop column distinguishing_features, drop column centroid_shift,
            drop column previous_customer_count;
        alter table segmentation.runs
            drop column size_psi, drop column max_centroid_shift, drop column n_outliers, drop column report_path;
        alter table segmentation.k_evaluations
            drop column gap, drop column gap_sd, drop column stability_ari, drop column gap_choice, drop column votes;
        """
    )
