"""Any data set: customers keyed by text ids with declared attributes, long-format profiles.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

- `datasets`: one row per data-set declaration seen (fingerprint and the declaration).
- `customers` and `customer_segments`: customer_id becomes text (whole-number ids are stored
  without leading zeros, text ids as given); the mall's four typed columns become
  `attributes text[]`, the values in the declaration's column order, with `dataset_id`
  naming the declaration they were read under.
- `segment_features`: one row per run x segment x feature (x category); the mall's
  avg_/median_/_index/female_share columns of `segment_profiles` move there.
- `runs` records the declaration (`dataset`, `dataset_fingerprint`), the import's reject
  share and the views' signatures go to `view_versions`.
- Views: `current_segment_features` (new, fixed); `current_customer_segments`,
  `current_segment_profiles` and `segment_profile_history` are recreated for the mall's
  declaration from this migration's own copies below; afterwards a run recreates them from
  its declaration (segmentation.views) when that changes.

Downgrade keeps customers of the mall declaration with whole-number ids only.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

READER_ROLE = "segmentation_reader"
#: segmentation.dataset.MALL.fingerprint() when this migration was written
MALL_FINGERPRINT = "e9313cb8e4eb2370"
MALL_DECLARATION = (
    '{"id_column": "CustomerID", "id_type": "whole", "columns": ['
    '{"name": "gender", "from": "Gender", "type": "category"}, {"name": "age", "from": "Age", "type": "whole"},'
    ' {"name": "annual_income_k", "from": "Annual Income (k$)", "type": "number"},'
    ' {"name": "spending_score", "from": "Spending Score (1-100)", "type": "whole"}]}'
)

CURRENT_CUSTOMER_SEGMENTS = """
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
    cast(assigned.customer_id as bigint) as customer_id,
    assigned.segment_id,
    profile.segment_name,
    cast(assigned.attributes[1] as text) as "gender",
    cast(assigned.attributes[2] as bigint) as "age",
    cast(assigned.attributes[3] as numeric) as "annual_income_k",
    cast(assigned.attributes[4] as bigint) as "spending_score",
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

CURRENT_CUSTOMER_SEGMENTS_COMMENTS = (
    'Grain: one row per customer of the latest published run. Segment and declared attributes of each customer.',
    {
        "customer_id": "The customer's id as in the export (a whole number).",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name, e.g. High income, high spending.",
        "distance_to_centroid": "Distance to the segment centre in scaled units (standard deviations by default).",
        "run_id": "The run that assigned the segment (see run_history).",
        "published_at": "When that run was published.",
        "second_segment_id": "The next-nearest segment.",
        "margin_to_second": "Distance to the second segment minus distance to the own one; small means borderline.",
        "is_outlier": "True beyond Q3 + 3 x IQR of the distances in the segment (far from every centre).",
        "gender": "Gender, as the run saw it (category).",
        "age": "Age (years), as the run saw it (whole).",
        "annual_income_k": "Annual income (k$), as the run saw it (number).",
        "spending_score": "Spending score (1-100), as the run saw it (whole)."
},
)

CURRENT_SEGMENT_PROFILES = """
create view segmentation.current_segment_profiles as
-- grain: one row per segment of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(feature."mean") filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(feature."mean") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(feature."mean") filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share",
        max(feature."median") filter (where feature.feature = 'age' and feature.category is null) as "median_age",
        max(feature."median") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "median_annual_income_k",
        max(feature."median") filter (where feature.feature = 'spending_score' and feature.category is null) as "median_spending_score",
        max(feature."index_value") filter (where feature.feature = 'age' and feature.category is null) as "age_index",
        max(feature."index_value") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "annual_income_index",
        max(feature."index_value") filter (where feature.feature = 'spending_score' and feature.category is null) as "spending_score_index",
        max(feature."index_value") filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share_index",
        max(feature."index_value") filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share_index"
    from segmentation.segment_features as feature
    where feature.run_id = (select run_id from latest_run)
    group by feature.run_id, feature.segment_id
)
select
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    profile.recommendation,
    profile.run_id,
    latest_run.published_at,
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
join segmentation.segment_profiles as profile
    on profile.run_id = latest_run.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id
"""

CURRENT_SEGMENT_PROFILES_COMMENTS = (
    'Grain: one row per segment of the latest published run. Size, averages and shares, name and recommendation.',
    {
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name from its distinguishing features.",
        "customer_count": "Customers in the segment.",
        "customer_share": "Share of all customers of the run (0..1).",
        "recommendation": "Suggested marketing action for the segment.",
        "run_id": "The run (see run_history).",
        "published_at": "When the run was published.",
        "distinguishing_features": "In words, what sets the segment apart from the average customer.",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        "previous_customer_count": "Customers in the segment in the previous published run.",
        "avg_age": "Mean age (years).",
        "avg_annual_income_k": "Mean annual income (k$).",
        "avg_spending_score": "Mean spending score (1-100).",
        "female_share": "Share of customers with gender = Female (0..1).",
        "male_share": "Share of customers with gender = Male (0..1).",
        "median_age": "Median age (years).",
        "median_annual_income_k": "Median annual income (k$).",
        "median_spending_score": "Median spending score (1-100).",
        "age_index": "Segment mean of age / overall mean x 100 (100 = average).",
        "annual_income_index": "Segment mean of annual income / overall mean x 100 (100 = average).",
        "spending_score_index": "Segment mean of spending score / overall mean x 100 (100 = average).",
        "female_share_index": "Segment share of gender = Female / overall share x 100.",
        "male_share_index": "Segment share of gender = Male / overall share x 100."
},
)

SEGMENT_PROFILE_HISTORY = """
create view segmentation.segment_profile_history as
-- grain: one row per segment of every published run, oldest first
with pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(feature."mean") filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(feature."mean") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(feature."mean") filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share"
    from segmentation.segment_features as feature
    group by feature.run_id, feature.segment_id
)
select
    runs.run_id,
    runs.published_at,
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    profile.centroid_shift
from segmentation.runs as runs
join segmentation.segment_profiles as profile
    on profile.run_id = runs.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id
where runs.status = 'published'
order by runs.published_at, runs.run_id, profile.segment_id
"""

SEGMENT_PROFILE_HISTORY_COMMENTS = (
    'Grain: one row per segment of every published run, oldest first. Segment sizes and profiles over time.',
    {
        "run_id": "Published run (see run_history).",
        "published_at": "When the run was published.",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        "customer_count": "Customers in the segment in that run.",
        "customer_share": "Share of that run's customers (0..1).",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        "avg_age": "Mean age (years).",
        "avg_annual_income_k": "Mean annual income (k$).",
        "avg_spending_score": "Mean spending score (1-100).",
        "female_share": "Share of customers with gender = Female (0..1).",
        "male_share": "Share of customers with gender = Male (0..1)."
},
)

CURRENT_SEGMENT_FEATURES = """
create view segmentation.current_segment_features as
-- grain: one row per segment x feature (x category) of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    feature.segment_id,
    profile.segment_name,
    feature.feature,
    feature.label,
    feature.unit,
    feature.category,
    feature.mean,
    feature.median,
    feature.index_value as index,
    feature.level,
    feature.position,
    feature.run_id,
    latest_run.published_at
from latest_run
join segmentation.segment_features as feature
    on feature.run_id = latest_run.run_id
join segmentation.segment_profiles as profile
    on profile.run_id = feature.run_id
    and profile.segment_id = feature.segment_id
"""
CURRENT_SEGMENT_FEATURES_COMMENTS = (
    "Grain: one row per segment x feature (x category for categories) of the latest published run."
    " Long format for any feature set: pivot it in the BI tool.",
    {
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        "feature": "Declared column name of the feature.",
        "label": "Readable label of the feature.",
        "unit": "Unit of the feature's values (empty for categories and booleans).",
        "category": "For a category or boolean feature: the category; NULL for numbers.",
        "mean": "Mean in original units; for a category, the share of the segment's customers in it (0..1).",
        "median": "Median in original units (numbers only).",
        "index": "Segment mean (or share) / overall mean (or share) x 100; 100 = average.",
        "level": "low, average or high: the segment mean against all customers, in standard deviations (beyond 0.5).",
        "position": "Order of the row within the segment (declaration order).",
        "run_id": "The run (see run_history).",
        "published_at": "When the run was published.",
    },
)

DECLARED_VIEWS = {
    "current_customer_segments": (CURRENT_CUSTOMER_SEGMENTS, CURRENT_CUSTOMER_SEGMENTS_COMMENTS),
    "current_segment_profiles": (CURRENT_SEGMENT_PROFILES, CURRENT_SEGMENT_PROFILES_COMMENTS),
    "segment_profile_history": (SEGMENT_PROFILE_HISTORY, SEGMENT_PROFILE_HISTORY_COMMENTS),
    "current_segment_features": (CURRENT_SEGMENT_FEATURES, CURRENT_SEGMENT_FEATURES_COMMENTS),
}

#: (feature, category, avg column, median column, index column) of the mall's old profile columns
OLD_PROFILE_COLUMNS = (
    ("age", None, "avg_age", "median_age", "age_index"),
    ("annual_income_k", None, "avg_annual_income_k", "median_annual_income_k", "annual_income_index"),
    ("spending_score", None, "avg_spending_score", "median_spending_score", "spending_score_index"),
    ("gender", "Female", "female_share", None, "female_share_index"),
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


def _comment(kind: str, name: str, text: str) -> None:
    # Comments are constants of the migrations, never user data; quote them as SQL literals.
    op.execute(f"comment on {kind} {name} is '{text.replace(chr(39), chr(39) * 2)}'")


def _create_view(name: str, statement: str, comments: tuple[str, dict[str, str]]) -> None:
    op.execute(statement)
    text, columns = comments
    _comment("view", f"segmentation.{name}", text)
    for column, column_text in columns.items():
        _comment("column", f'segmentation.{name}."{column}"', column_text)
    op.execute(f"grant select on segmentation.{name} to {READER_ROLE}")


def upgrade() -> None:
    for view in ("segment_transitions", "segment_profile_history", "current_segment_profiles", "current_customer_segments"):
        op.execute(f"drop view segmentation.{view}")
    op.execute(
        f"""
        create table segmentation.datasets (
            dataset_id integer generated always as identity primary key,
            fingerprint text not null unique,
            declaration jsonb not null,
            created_at timestamptz not null default now()
        );
        comment on table segmentation.datasets is 'One row per data-set declaration seen: what attributes[] holds.';
        insert into segmentation.datasets (fingerprint, declaration)
            values ('{MALL_FINGERPRINT}', cast('{MALL_DECLARATION}' as jsonb));

        alter table segmentation.customers drop constraint customers_customer_id_check;
        alter table segmentation.customers alter column customer_id type text collate "C" using customer_id::text;
        alter table segmentation.customers
            -- no foreign key to datasets: a per-row check would halve the speed of loading
            -- millions of customers (ingest.ensure_dataset writes the row in the same transaction)
            add column dataset_id integer,
            add column attributes text[];
        update segmentation.customers set
            dataset_id = (select dataset_id from segmentation.datasets where fingerprint = '{MALL_FINGERPRINT}'),
            attributes = array[gender, age::text, annual_income_k::text, spending_score::text];
        alter table segmentation.customers
            alter column dataset_id set not null,
            alter column attributes set not null,
            drop column gender, drop column age, drop column annual_income_k, drop column spending_score;
        comment on column segmentation.customers.attributes is
            'Declared attributes as validated text, in the order of the declaration named by dataset_id.';

        alter table segmentation.customer_segments alter column customer_id type text collate "C" using customer_id::text;
        alter table segmentation.customer_segments add column attributes text[];
        update segmentation.customer_segments
            set attributes = array[gender, age::text, annual_income_k::text, spending_score::text];
        alter table segmentation.customer_segments
            drop column gender, drop column age, drop column annual_income_k, drop column spending_score;

        create table segmentation.segment_features (
            run_id bigint not null references segmentation.runs (run_id) on delete cascade,
            segment_id integer not null,
            position smallint not null,
            feature text not null,
            category text,
            label text not null,
            unit text,
            is_clustering_feature boolean not null default true,
            mean double precision,
            median double precision,
            index_value double precision,
            z_score double precision,
            level text check (level in ('low', 'average', 'high')),
            primary key (run_id, segment_id, position)
        );
        comment on table segmentation.segment_features is
            'One row per run x segment x feature (x category): means in original units, shares, indexes, levels.';

        alter table segmentation.runs
            add column dataset jsonb,
            add column dataset_fingerprint text,
            add column source_name text,
            add column reject_share double precision;
        alter table segmentation.k_evaluations add column smallest_segment_share double precision;

        create table segmentation.view_versions (
            view_name text primary key,
            signature text not null,
            updated_at timestamptz not null default now()
        );
        comment on table segmentation.view_versions is
            'Hash of the SQL of each view that follows the declaration: a run recreates a view when it changes.';
        """
    )
    for position, (feature, category, mean, median, index) in enumerate(OLD_PROFILE_COLUMNS, start=1):
        op.execute(
            f"""
            insert into segmentation.segment_features
                (run_id, segment_id, position, feature, category, label, mean, median, index_value)
            select run_id, segment_id, {position}, '{feature}', {f"'{category}'" if category else 'null'},
                   '{feature.replace('_', ' ')}', {mean}, {median or 'null'}, {index}
            from segmentation.segment_profiles
            where {mean} is not null
            """
        )
    op.execute(
        "alter table segmentation.segment_profiles "
        + ", ".join(
            f"drop column {column}"
            for _, _, mean, median, index in OLD_PROFILE_COLUMNS
            for column in (mean, median, index)
            if column
        )
    )
    for name, (statement, comments) in DECLARED_VIEWS.items():
        _create_view(name, statement, comments)
    third = _load("0003_operations.py")
    op.execute(third.SEGMENT_TRANSITIONS)
    text, columns = third._earlier_comments()["segment_transitions"]
    _comment("view", "segmentation.segment_transitions", text)
    for column, column_text in columns.items():
        _comment("column", f"segmentation.segment_transitions.{column}", column_text)
    op.execute(f"grant select on segmentation.segment_transitions to {READER_ROLE}")


def downgrade() -> None:
    for view in ("segment_transitions", "current_segment_features", *tuple(DECLARED_VIEWS)[:3]):
        op.execute(f"drop view if exists segmentation.{view}")
    op.execute(
        """
        alter table segmentation.segment_profiles
            add column avg_age double precision, add column avg_annual_income_k double precision,
            add column avg_spending_score double precision, add column female_share double precision,
            add column median_age double precision, add column median_annual_income_k double precision,
            add column median_spending_score double precision, add column age_index double precision,
            add column annual_income_index double precision, add column spending_score_index double precision,
            add column female_share_index double precision;
        """
    )
    for feature, category, mean, median, index in OLD_PROFILE_COLUMNS:
        category_test = f"feature.category = '{category}'" if category else "feature.category is null"
        assignments = [f"{mean} = feature.mean", f"{index} = feature.index_value"]
        if median:
            assignments.append(f"{median} = feature.median")
        op.execute(
            f"""
            update segmentation.segment_profiles as profile set {', '.join(assignments)}
            from segmentation.segment_features as feature
            where feature.run_id = profile.run_id and feature.segment_id = profile.segment_id
            and feature.feature = '{feature}' and {category_test}
            """
        )
    op.execute(
        f"""
        alter table segmentation.k_evaluations drop column smallest_segment_share;
        drop table segmentation.view_versions;
        drop table segmentation.segment_features;
        alter table segmentation.runs
            drop column dataset, drop column dataset_fingerprint, drop column source_name, drop column reject_share;

        delete from segmentation.customer_segments
            where customer_id !~ '^[0-9]{{1,18}}$';
        alter table segmentation.customer_segments
            add column gender text, add column age smallint, add column annual_income_k numeric,
            add column spending_score smallint;
        update segmentation.customer_segments set
            gender = attributes[1], age = attributes[2]::smallint,
            annual_income_k = attributes[3]::numeric, spending_score = attributes[4]::smallint
        where cardinality(attributes) = 4 and attributes[1] in ('Female', 'Male')
            and attributes[2] ~ '^[0-9]+$' and attributes[4] ~ '^[0-9]+$';
        alter table segmentation.customer_segments drop column attributes;
        -- 0003's downgrade copies rows with select *: restore 0003's column order
        alter table segmentation.customer_segments
            add column second_segment_id_ integer, add column margin_to_second_ double precision,
            add column is_outlier_ boolean not null default false;
        update segmentation.customer_segments set second_segment_id_ = second_segment_id,
            margin_to_second_ = margin_to_second, is_outlier_ = is_outlier;
        alter table segmentation.customer_segments
            drop column second_segment_id, drop column margin_to_second, drop column is_outlier;
        alter table segmentation.customer_segments rename column second_segment_id_ to second_segment_id;
        alter table segmentation.customer_segments rename column margin_to_second_ to margin_to_second;
        alter table segmentation.customer_segments rename column is_outlier_ to is_outlier;
        alter table segmentation.customer_segments alter column customer_id type bigint using customer_id::bigint;

        delete from segmentation.customers
            where customer_id !~ '^[0-9]{{1,18}}$'
            or dataset_id <> (select dataset_id from segmentation.datasets where fingerprint = '{MALL_FINGERPRINT}');
        alter table segmentation.customers
            add column gender text check (gender in ('Female', 'Male')),
            add column age smallint check (age between 0 and 120),
            add column annual_income_k numeric check (annual_income_k >= 0),
            add column spending_score smallint check (spending_score between 1 and 100);
        update segmentation.customers set
            gender = attributes[1], age = attributes[2]::smallint,
            annual_income_k = attributes[3]::numeric, spending_score = attributes[4]::smallint;
        alter table segmentation.customers drop column attributes, drop column dataset_id;
        alter table segmentation.customers alter column customer_id type bigint using customer_id::bigint;
        alter table segmentation.customers add constraint customers_customer_id_check check (customer_id > 0);
        drop table segmentation.datasets;
        """
    )
    second, third = _load("0002_model_outputs.py"), _load("0003_operations.py")
    op.execute(second.CURRENT_SEGMENT_PROFILES)
    third._recreate_views()
    comments = third._earlier_comments()
    text, columns = comments["current_segment_profiles"]
    _comment("view", "segmentation.current_segment_profiles", text)
    for column, column_text in columns.items():
        _comment("column", f"segmentation.current_segment_profiles.{column}", column_text)
    op.execute(
        f"grant select on segmentation.current_customer_segments, segmentation.current_segment_profiles,"
        f" segmentation.segment_transitions, segmentation.segment_profile_history to {READER_ROLE}"
    )


#: This migration's view definitions, as the reference copies in sql/views/ follow them.
VIEW_SQL = {name: statement for name, (statement, _) in DECLARED_VIEWS.items()}
