"""Views a dashboard can chart: labels, colours, dates, percentages, transitions over time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- `segment_transitions` gets `from_label` / `to_label` ('run 1: High income, high spending'),
  so that a Sankey chart has no node on both sides; customers new in the later run come from
  '(new customers)', customers gone from it go to '(left)'. `segment_transitions_history`
  has the same columns for every pair of consecutive published runs whose per-customer rows
  are still kept.
- Every view with segments gets `segment_label` (at most 20 characters, unique in a run),
  `segment_order` and `segment_color` (segmentation.palette's colours by segment id, as the
  report draws them); every view with `published_at` gets `published_date`;
  `segment_profile_history` gets `is_latest_of_day`. Shares get 0-100 `_pct` columns rounded
  to one decimal as the command line prints them; averages and medians are rounded to three
  significant digits (at least one decimal), indexes to whole numbers. Tables keep full
  precision.
- `run_history` loses `report_path`, a path on the job's server that no BI user can open
  (`segment report RUN_ID` writes the report again).

The views that follow the declaration are replaced by this migration's mall copies only when
no run has generated them yet (`view_versions` is empty); otherwise the next publishing run
recreates them from its declaration (segmentation.views), as their SQL changed.
This file carries its own copy of the SQL (segmentation.display holds the same expressions
for the generated views; tests keep them equal).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

READER_ROLE = "segmentation_reader"

# segmentation.palette.PALETTE and segmentation.display's rules when this migration was written
_COLOR = (
    "(array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',"
    " '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7',"
    " '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1]"
)
_LABEL = (
    r"regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1),"
    r" '^(.{19}).{2,}$', '\1…')"
)
_ORDER = "cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer)"
_DECIMALS = (
    "coalesce(greatest(1, 2 - cast(floor(log(nullif(max(abs(feature.mean))"
    " over (partition by feature.run_id, feature.feature, feature.category), 0))) as integer)), 1)"
)

RUN_HISTORY = """
create view segmentation.run_history with (security_barrier = true) as
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
    cast(runs.published_at as date) as published_date,
    runs.rationale,
    runs.features,
    runs.error,
    runs.size_psi,
    runs.max_centroid_shift,
    runs.n_outliers
from segmentation_internal.runs as runs
order by runs.run_id desc
"""

CURRENT_SEGMENT_FEATURES = f"""
create view segmentation.current_segment_features with (security_barrier = true) as
-- grain: one row per segment x feature (x category) of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
features as (
    select
        feature.*,
        {_DECIMALS} as decimals
    from segmentation_internal.segment_features as feature
    where feature.run_id = (select run_id from latest_run)
)
select
    feature.segment_id,
    profile.segment_name,
    {_LABEL} as segment_label,
    {_ORDER} as segment_order,
    {_COLOR} as segment_color,
    feature.feature,
    feature.label,
    feature.unit,
    feature.category,
    cast(round(cast(feature.mean as numeric), feature.decimals) as double precision) as mean,
    case when feature.category is not null then round(cast(feature.mean * 100 as numeric), 1) end as share_pct,
    cast(round(cast(feature.median as numeric), feature.decimals) as double precision) as median,
    cast(round(cast(feature.index_value as numeric), 0) as double precision) as index,
    feature.level,
    feature.position,
    feature.run_id,
    latest_run.published_at,
    cast(latest_run.published_at as date) as published_date
from latest_run
join features as feature
    on feature.run_id = latest_run.run_id
join segmentation_internal.segment_profiles as profile
    on profile.run_id = feature.run_id
    and profile.segment_id = feature.segment_id
"""

# Both transition views: the run pairs differ, the rest is the same.
_TRANSITIONS = """
create view segmentation.{name} with (security_barrier = true) as
-- grain: {grain}
with published as (
    select
        runs.run_id,
        runs.published_at,
        lag(runs.run_id) over (order by runs.published_at, runs.run_id) as previous_run_id
    from segmentation_internal.runs as runs
    where runs.status = 'published'
),
run_pairs as (
    select
        published.previous_run_id as from_run_id,
        published.run_id as to_run_id,
        published.published_at as to_published_at
    from published
    where published.previous_run_id is not null{pairs}
    and exists (
        select 1 from segmentation_internal.customer_segments as kept where kept.run_id = published.previous_run_id
    )
    and exists (
        select 1 from segmentation_internal.customer_segments as kept where kept.run_id = published.run_id
    )
),
moves as (
    select
        run_pairs.from_run_id,
        run_pairs.to_run_id,
        run_pairs.to_published_at,
        pair_moves.from_segment_id,
        pair_moves.to_segment_id,
        count(*) as customer_count
    from run_pairs
    cross join lateral (
        select
            previous_assignments.segment_id as from_segment_id,
            current_assignments.segment_id as to_segment_id
        from (
            select customer_id, segment_id
            from segmentation_internal.customer_segments
            where run_id = run_pairs.from_run_id
        ) as previous_assignments
        full join (
            select customer_id, segment_id
            from segmentation_internal.customer_segments
            where run_id = run_pairs.to_run_id
        ) as current_assignments
            on current_assignments.customer_id = previous_assignments.customer_id
    ) as pair_moves
    group by 1, 2, 3, 4, 5
),
named as (
    select
        moves.*,
        coalesce(from_profile.segment_name, '(new customers)') as from_segment_name,
        coalesce(to_profile.segment_name, '(left)') as to_segment_name,
        -- the pair's columns in the partition let a filter on to_run_id or the date reach run_pairs
        cast(moves.customer_count as double precision) / sum(moves.customer_count) over (
            partition by moves.from_run_id, moves.to_run_id, moves.to_published_at, moves.from_segment_id
        ) as share_of_from_segment
    from moves
    left join segmentation_internal.segment_profiles as from_profile
        on from_profile.run_id = moves.from_run_id
        and from_profile.segment_id = moves.from_segment_id
    left join segmentation_internal.segment_profiles as to_profile
        on to_profile.run_id = moves.to_run_id
        and to_profile.segment_id = moves.to_segment_id
)
select
    named.from_run_id,
    named.to_run_id,
    named.from_segment_id,
    named.from_segment_name,
    named.to_segment_id,
    named.to_segment_name,
    'run ' || named.from_run_id || ': ' || named.from_segment_name as from_label,
    'run ' || named.to_run_id || ': ' || named.to_segment_name as to_label,
    named.customer_count,
    named.share_of_from_segment,
    round(cast(named.share_of_from_segment * 100 as numeric), 1) as share_of_from_segment_pct,
    named.to_published_at,
    cast(named.to_published_at as date) as to_published_date
from named
"""

SEGMENT_TRANSITIONS = _TRANSITIONS.format(
    name="segment_transitions",
    grain="one row per (previous segment, current segment) pair between the two latest published runs",
    pairs="\n    and published.run_id = ("
    "\n        select latest.run_id from published as latest"
    "\n        order by latest.published_at desc, latest.run_id desc"
    "\n        limit 1"
    "\n    )",
)
CURRENT_CUSTOMER_SEGMENTS = r"""
create view segmentation.current_customer_segments with (security_barrier = true) as
-- grain: one row per customer of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
segments as materialized (
    select
        profile.run_id,
        profile.segment_id,
        profile.segment_name,
        regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1), '^(.{19}).{2,}$', '\1…') as segment_label,
        cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,
        (array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1] as segment_color
    from segmentation_internal.segment_profiles as profile
    where profile.run_id = (select run_id from latest_run)
)
select
    cast(assigned.customer_id as bigint) as customer_id,
    assigned.segment_id,
    segments.segment_name,
    segments.segment_label,
    segments.segment_order,
    segments.segment_color,
    cast(assigned.attributes[1] as text) as "gender",
    cast(assigned.attributes[2] as bigint) as "age",
    cast(assigned.attributes[3] as numeric) as "annual_income_k",
    cast(assigned.attributes[4] as bigint) as "spending_score",
    assigned.distance_to_centroid,
    assigned.run_id,
    latest_run.published_at,
    cast(latest_run.published_at as date) as published_date,
    assigned.second_segment_id,
    assigned.margin_to_second,
    assigned.is_outlier
from latest_run
join segmentation_internal.customer_segments as assigned
    on assigned.run_id = latest_run.run_id
join segments
    on segments.segment_id = assigned.segment_id
"""

CURRENT_CUSTOMER_SEGMENTS_COMMENTS = (
    'Grain: one row per customer of the latest published run. Segment and declared attributes of each customer.',
    {
        'customer_id': "The customer's id as in the export (a whole number).",
        'segment_id': 'Segment number; stable from run to run for matching segments.',
        'segment_name': 'Readable segment name, e.g. High income, high spending.',
        'segment_label': 'Short label for chart axes, unique within the run: S<segment_id> and the name up to its first comma, at most 20 characters.',
        'segment_order': 'Position of the segment in its run by segment_id (1..k): sort bars and legends by it.',
        'segment_color': 'Hex colour of the segment, the same in the report; follows segment_id, so it is kept from run to run.',
        'distance_to_centroid': 'Distance to the segment centre in scaled units (standard deviations by default).',
        'run_id': 'The run that assigned the segment (see run_history).',
        'published_at': 'When that run was published.',
        'published_date': "Date of published_at in the session's time zone (for a daily grain).",
        'second_segment_id': 'The next-nearest segment.',
        'margin_to_second': 'Distance to the second segment minus distance to the own one; small means borderline.',
        'is_outlier': 'True beyond Q3 + 3 x IQR of the distances in the segment (far from every centre).',
        'gender': 'Gender, as the run saw it (category).',
        'age': 'Age (years), as the run saw it (whole).',
        'annual_income_k': 'Annual income (k$), as the run saw it (number).',
        'spending_score': 'Spending score (1-100), as the run saw it (whole).',
    },
)

CURRENT_SEGMENT_PROFILES = r"""
create view segmentation.current_segment_profiles with (security_barrier = true) as
-- grain: one row per segment of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
features as (
    select
        feature.*,
        coalesce(greatest(1, 2 - cast(floor(log(nullif(max(abs(feature.mean)) over (partition by feature.run_id, feature.feature, feature.category), 0))) as integer)), 1) as decimals
    from segmentation_internal.segment_features as feature
    where feature.run_id = (select run_id from latest_run)
),
pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature.mean) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature.mean) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share",
        max(round(cast(feature.mean * 100 as numeric), 1)) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share_pct",
        max(round(cast(feature.mean * 100 as numeric), 1)) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share_pct",
        max(cast(round(cast(feature.median as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'age' and feature.category is null) as "median_age",
        max(cast(round(cast(feature.median as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'annual_income_k' and feature.category is null) as "median_annual_income_k",
        max(cast(round(cast(feature.median as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'spending_score' and feature.category is null) as "median_spending_score",
        max(cast(round(cast(feature.index_value as numeric), 0) as double precision)) filter (where feature.feature = 'age' and feature.category is null) as "age_index",
        max(cast(round(cast(feature.index_value as numeric), 0) as double precision)) filter (where feature.feature = 'annual_income_k' and feature.category is null) as "annual_income_index",
        max(cast(round(cast(feature.index_value as numeric), 0) as double precision)) filter (where feature.feature = 'spending_score' and feature.category is null) as "spending_score_index",
        max(cast(round(cast(feature.index_value as numeric), 0) as double precision)) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share_index",
        max(cast(round(cast(feature.index_value as numeric), 0) as double precision)) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share_index"
    from features as feature
    group by feature.run_id, feature.segment_id
)
select
    profile.segment_id,
    profile.segment_name,
    regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1), '^(.{19}).{2,}$', '\1…') as segment_label,
    cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,
    (array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1] as segment_color,
    profile.customer_count,
    profile.customer_share,
    round(cast(profile.customer_share * 100 as numeric), 1) as customer_share_pct,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    pivoted."female_share_pct",
    pivoted."male_share_pct",
    profile.recommendation,
    profile.run_id,
    latest_run.published_at,
    cast(latest_run.published_at as date) as published_date,
    pivoted."median_age",
    pivoted."median_annual_income_k",
    pivoted."median_spending_score",
    pivoted."age_index",
    pivoted."annual_income_index",
    pivoted."spending_score_index",
    pivoted."female_share_index",
    pivoted."male_share_index",
    profile.distinguishing_features,
    profile.centroid_shift,
    profile.previous_customer_count
from latest_run
join segmentation_internal.segment_profiles as profile
    on profile.run_id = latest_run.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id
"""

CURRENT_SEGMENT_PROFILES_COMMENTS = (
    'Grain: one row per segment of the latest published run. Size, averages and shares, name and recommendation.',
    {
        'segment_id': 'Segment number; stable from run to run for matching segments.',
        'segment_name': 'Readable segment name from its distinguishing features.',
        'segment_label': 'Short label for chart axes, unique within the run: S<segment_id> and the name up to its first comma, at most 20 characters.',
        'segment_order': 'Position of the segment in its run by segment_id (1..k): sort bars and legends by it.',
        'segment_color': 'Hex colour of the segment, the same in the report; follows segment_id, so it is kept from run to run.',
        'customer_count': 'Customers in the segment.',
        'customer_share': 'Share of all customers of the run (0..1).',
        'customer_share_pct': 'Percentage of all customers of the run (0-100, one decimal, as segment run prints it).',
        'recommendation': 'Suggested marketing action for the segment.',
        'run_id': 'The run (see run_history).',
        'published_at': 'When the run was published.',
        'published_date': "Date of published_at in the session's time zone (for a daily grain).",
        'distinguishing_features': 'In words, what sets the segment apart from the average customer.',
        'centroid_shift': 'How far the segment centre moved since the previous published run (scaled units).',
        'previous_customer_count': 'Customers in the segment in the previous published run.',
        'avg_age': "Mean age (years). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'median_age': "Median age (years). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'age_index': 'Segment mean of age / overall mean x 100 (100 = average), whole number.',
        'avg_annual_income_k': "Mean annual income (k$). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'median_annual_income_k': "Median annual income (k$). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'annual_income_index': 'Segment mean of annual income / overall mean x 100 (100 = average), whole number.',
        'avg_spending_score': "Mean spending score (1-100). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'median_spending_score': "Median spending score (1-100). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'spending_score_index': 'Segment mean of spending score / overall mean x 100 (100 = average), whole number.',
        'female_share': 'Share of customers with gender = Female (0..1).',
        'female_share_pct': 'Percentage of customers with gender = Female (0-100, one decimal).',
        'female_share_index': 'Segment share of gender = Female / overall share x 100, whole number.',
        'male_share': 'Share of customers with gender = Male (0..1).',
        'male_share_pct': 'Percentage of customers with gender = Male (0-100, one decimal).',
        'male_share_index': 'Segment share of gender = Male / overall share x 100, whole number.',
    },
)

SEGMENT_PROFILE_HISTORY = r"""
create view segmentation.segment_profile_history with (security_barrier = true) as
-- grain: one row per segment of every published run, oldest first
with published as (
    select
        runs.run_id,
        runs.published_at,
        cast(runs.published_at as date) as published_date,
        row_number() over (partition by cast(runs.published_at as date) order by runs.published_at desc, runs.run_id desc) = 1 as is_latest_of_day
    from segmentation_internal.runs as runs
    where runs.status = 'published'
),
features as (
    select
        feature.*,
        coalesce(greatest(1, 2 - cast(floor(log(nullif(max(abs(feature.mean)) over (partition by feature.run_id, feature.feature, feature.category), 0))) as integer)), 1) as decimals
    from segmentation_internal.segment_features as feature
    where feature.run_id in (select run_id from published)
),
pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature.mean) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature.mean) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share",
        max(round(cast(feature.mean * 100 as numeric), 1)) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share_pct",
        max(round(cast(feature.mean * 100 as numeric), 1)) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share_pct"
    from features as feature
    group by feature.run_id, feature.segment_id
)
select
    published.run_id,
    published.published_at,
    published.published_date,
    published.is_latest_of_day,
    profile.segment_id,
    profile.segment_name,
    regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1), '^(.{19}).{2,}$', '\1…') as segment_label,
    cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,
    (array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1] as segment_color,
    profile.customer_count,
    profile.customer_share,
    round(cast(profile.customer_share * 100 as numeric), 1) as customer_share_pct,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    pivoted."female_share_pct",
    pivoted."male_share_pct",
    profile.centroid_shift
from published
join segmentation_internal.segment_profiles as profile
    on profile.run_id = published.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id
order by published.published_at, published.run_id, profile.segment_id
"""

SEGMENT_PROFILE_HISTORY_COMMENTS = (
    'Grain: one row per segment of every published run, oldest first. Segment sizes and profiles over time.',
    {
        'run_id': 'Published run (see run_history).',
        'published_at': 'When the run was published.',
        'published_date': "Date of published_at in the session's time zone (for a daily grain).",
        'is_latest_of_day': 'True for the last run published on its published_date: filter on it for one run per day.',
        'segment_id': 'Segment number; stable from run to run for matching segments.',
        'segment_name': 'Readable segment name.',
        'segment_label': 'Short label for chart axes, unique within the run: S<segment_id> and the name up to its first comma, at most 20 characters.',
        'segment_order': 'Position of the segment in its run by segment_id (1..k): sort bars and legends by it.',
        'segment_color': 'Hex colour of the segment, the same in the report; follows segment_id, so it is kept from run to run.',
        'customer_count': 'Customers in the segment in that run.',
        'customer_share': "Share of that run's customers (0..1).",
        'customer_share_pct': "Percentage of that run's customers (0-100, one decimal).",
        'centroid_shift': 'How far the segment centre moved since the previous published run (scaled units).',
        'avg_age': "Mean age (years). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'avg_annual_income_k': "Mean annual income (k$). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'avg_spending_score': "Mean spending score (1-100). Rounded to three significant digits of the run's largest segment value, at least one decimal.",
        'female_share': 'Share of customers with gender = Female (0..1).',
        'male_share': 'Share of customers with gender = Male (0..1).',
        'female_share_pct': 'Percentage of customers with gender = Female (0-100, one decimal).',
        'male_share_pct': 'Percentage of customers with gender = Male (0-100, one decimal).',
    },
)


SEGMENT_TRANSITIONS_HISTORY = _TRANSITIONS.format(
    name="segment_transitions_history",
    grain="one row per (segment in a published run, segment in the next published run) pair, for every pair of"
    " consecutive published runs whose per-customer rows are kept",
    pairs="",
)

_PUBLISHED_DATE = "Date of published_at in the session's time zone (for a daily grain)."
_SEGMENT_COMMENTS = {
    "segment_label": "Short label for chart axes, unique within the run: S<segment_id> and the name up to its first"
    " comma, at most 20 characters.",
    "segment_order": "Position of the segment in its run by segment_id (1..k): sort bars and legends by it.",
    "segment_color": "Hex colour of the segment, the same in the report; follows segment_id, so it is kept from run"
    " to run.",
}
_TRANSITION_COMMENTS = {
    "from_run_id": "The earlier published run of the pair.",
    "to_run_id": "The later published run of the pair (the next one published after from_run_id).",
    "from_segment_id": "Segment in the earlier run; null for customers new in the later run.",
    "from_segment_name": "Name of that segment in the earlier run, or (new customers).",
    "to_segment_id": "Segment in the later run; null for customers no longer segmented.",
    "to_segment_name": "Name of that segment in the later run, or (left).",
    "from_label": "Source node of a Sankey chart: run <from_run_id>: <from_segment_name>.",
    "to_label": "Target node of a Sankey chart: run <to_run_id>: <to_segment_name>.",
    "customer_count": "Customers who moved from the first segment to the second.",
    "share_of_from_segment": "customer_count as a share of the earlier segment's customers (0..1).",
    "share_of_from_segment_pct": "customer_count as a percentage of the earlier segment's customers (0-100, one decimal).",
    "to_published_at": "When the later run was published.",
    "to_published_date": "Date of to_published_at in the session's time zone.",
}

#: The fixed views this migration replaces or creates, with their comments.
FIXED_VIEWS = {
    "run_history": (
        RUN_HISTORY,
        "Grain: one row per segmentation run, newest first, including failed and held runs.",
        {
            "run_id": "Run number, increasing; segment report RUN_ID writes the run's HTML report.",
            "started_at": "When the run started.",
            "finished_at": "When the run ended (null while running).",
            "status": "running, published, held, failed, abandoned or cancelled.",
            "k": "Number of segments fitted.",
            "silhouette": "Mean silhouette of the fitted segments (-1..1, higher is better separated).",
            "n_customers": "Active customers segmented.",
            "published_at": "When the run became the current one (null if never published).",
            "published_date": _PUBLISHED_DATE,
            "rationale": "Why this number of segments was chosen.",
            "features": "Features the segments were fitted on.",
            "error": "Reason a run failed or was held.",
            "size_psi": "Population stability index of segment sizes against the previous published run.",
            "max_centroid_shift": "Largest centre shift of a matched segment against the previous published run"
            " (scaled units).",
            "n_outliers": "Customers flagged as outliers in this run.",
        },
    ),
    "current_segment_features": (
        CURRENT_SEGMENT_FEATURES,
        "Grain: one row per segment x feature (x category for categories) of the latest published run."
        " Long format for any feature set: pivot it in the BI tool.",
        {
            "segment_id": "Segment number; stable from run to run for matching segments.",
            "segment_name": "Readable segment name.",
            **_SEGMENT_COMMENTS,
            "feature": "Declared column name of the feature.",
            "label": "Readable label of the feature.",
            "unit": "Unit of the feature's values (empty for categories and booleans).",
            "category": "For a category or boolean feature: the category; NULL for numbers.",
            "mean": "Mean in original units; for a category, the share of the segment's customers in it (0..1)."
            " Rounded to three significant digits of the largest segment value, at least one decimal.",
            "share_pct": "For a category: the percentage of the segment's customers in it (0-100, one decimal);"
            " NULL for numbers.",
            "median": "Median in original units (numbers only), rounded as mean.",
            "index": "Segment mean (or share) / overall mean (or share) x 100; 100 = average. Whole number.",
            "level": "low, average or high: the segment mean against all customers, in standard deviations"
            " (beyond 0.5).",
            "position": "Order of the row within the segment (declaration order).",
            "run_id": "The run (see run_history).",
            "published_at": "When the run was published.",
            "published_date": _PUBLISHED_DATE,
        },
    ),
    "segment_transitions": (
        SEGMENT_TRANSITIONS,
        "Grain: one row per (previous segment, current segment) pair between the two latest published runs."
        " Customers moved between segments; chart it as a Sankey from from_label to to_label.",
        _TRANSITION_COMMENTS,
    ),
    "segment_transitions_history": (
        SEGMENT_TRANSITIONS_HISTORY,
        "Grain: one row per (segment, segment) pair of every two consecutive published runs whose per-customer"
        " rows are kept. Customers moved between segments over time; filter on to_run_id or to_published_date.",
        _TRANSITION_COMMENTS,
    ),
}

#: The views that follow the declaration, for the mall's declaration (segmentation.views).
DECLARED_VIEWS = {
    "current_customer_segments": (CURRENT_CUSTOMER_SEGMENTS, *CURRENT_CUSTOMER_SEGMENTS_COMMENTS),
    "current_segment_profiles": (CURRENT_SEGMENT_PROFILES, *CURRENT_SEGMENT_PROFILES_COMMENTS),
    "segment_profile_history": (SEGMENT_PROFILE_HISTORY, *SEGMENT_PROFILE_HISTORY_COMMENTS),
}

#: reference copies in sql/views/ must match (tests/integration/test_migrations.py)
VIEW_SQL = {name: statement for name, (statement, _, _) in {**FIXED_VIEWS, **DECLARED_VIEWS}.items()}


def _load(file_name: str):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        f"segmentation_migration_{file_name[:4]}", Path(__file__).with_name(file_name)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _quote(text: str) -> str:
    # Comments are constants of the migrations, never user data; quote them as SQL literals.
    return "'" + text.replace("'", "''") + "'"


def _create(name: str, statement: str, text: str, columns: dict[str, str]) -> None:
    """Create a view (a security barrier for the reader) with its comments and the reader's grant."""
    op.execute(statement)
    op.execute(f"alter view segmentation.{name} set (security_barrier = true)")
    op.execute(f"comment on view segmentation.{name} is {_quote(text)}")
    for column, column_text in columns.items():
        op.execute(f'comment on column segmentation.{name}."{column}" is {_quote(column_text)}')
    op.execute(f"grant select on segmentation.{name} to {READER_ROLE}")


def _generated_by_a_run() -> bool:
    """True when a run has (re)created the declared views from its declaration (segmentation.views)."""
    return op.get_bind().execute(sa.text("select exists (select 1 from segmentation_internal.view_versions)")).scalar()


def upgrade() -> None:
    for name, (statement, text, columns) in FIXED_VIEWS.items():
        op.execute(f"drop view if exists segmentation.{name}")
        _create(name, statement, text, columns)
    if not _generated_by_a_run():
        for name, (statement, text, columns) in DECLARED_VIEWS.items():
            op.execute(f"drop view segmentation.{name}")
            _create(name, statement, text, columns)


def _previous_comments() -> dict[str, tuple[str, dict[str, str]]]:
    """View and column comments as migrations 0001-0004 left them."""
    third, fourth = _load("0003_operations.py"), _load("0004_any_dataset.py")
    comments = third._earlier_comments()
    comments["current_segment_features"] = fourth.CURRENT_SEGMENT_FEATURES_COMMENTS
    for name, (_, view_comments) in fourth.DECLARED_VIEWS.items():
        comments[name] = view_comments
    return comments


def downgrade() -> None:
    previous_sql = _load("0007_internal_schema.py").VIEW_SQL
    comments = _previous_comments()
    names = [name for name in FIXED_VIEWS if name in previous_sql]
    if not _generated_by_a_run():
        names += list(DECLARED_VIEWS)
    op.execute("drop view segmentation.segment_transitions_history")
    for name in names:
        op.execute(f"drop view segmentation.{name}")
        text, columns = comments[name]
        _create(name, previous_sql[name], text, columns)
