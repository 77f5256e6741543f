"""Schema `segmentation`: customers, imports, versioned runs and the three BI views.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

The view SQL below is this migration's own copy (sql/views/ holds reference copies for
readers); later migrations that change a view carry their own new copy.
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = """
create table segmentation.import_batches (
    batch_id bigint generated always as identity primary key,
    source_name text not null,
    source_sha256 text,
    export_mode text not null check (export_mode in ('incremental', 'full')),
    status text not null default 'running' check (status in ('running', 'succeeded', 'failed')),
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    rows_read bigint not null default 0,
    rows_inserted bigint not null default 0,
    rows_updated bigint not null default 0,
    rows_unchanged bigint not null default 0,
    rows_rejected bigint not null default 0,
    rows_deactivated bigint not null default 0,
    error text,
    constraint import_batches_counts_add_up check (
        status <> 'succeeded'
        or rows_read = rows_inserted + rows_updated + rows_unchanged + rows_rejected
    )
);

create table segmentation.import_rejects (
    batch_id bigint not null references segmentation.import_batches (batch_id) on delete cascade,
    line_number bigint not null,
    raw_line text not null,
    reason text not null,
    primary key (batch_id, line_number)
);

-- first_batch_id / last_batch_id name import_batches rows but carry no foreign key: a
-- per-row key check would double the cost of loading millions of customers.
create table segmentation.customers (
    customer_id bigint primary key check (customer_id > 0),
    gender text check (gender in ('Female', 'Male')),
    age smallint check (age between 0 and 120),
    annual_income_k numeric check (annual_income_k >= 0),
    spending_score smallint check (spending_score between 1 and 100),
    is_active boolean not null default true,
    first_batch_id bigint,
    last_batch_id bigint,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table segmentation.runs (
    run_id bigint generated always as identity primary key,
    status text not null default 'running'
        check (status in ('running', 'published', 'held', 'failed', 'abandoned', 'cancelled')),
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    published_at timestamptz,
    batch_id bigint references segmentation.import_batches (batch_id),
    k integer,
    k_selection text check (k_selection in ('automatic', 'fixed')),
    rationale text,
    silhouette double precision,
    n_customers bigint,
    n_imputed jsonb,
    features text[],
    scaling text,
    random_state integer,
    n_init integer,
    settings jsonb,
    error text,
    hostname text,
    pid integer
);
create index runs_published_idx on segmentation.runs (published_at desc, run_id desc)
    where status = 'published';

create table segmentation.k_evaluations (
    run_id bigint not null references segmentation.runs (run_id) on delete cascade,
    k integer not null,
    inertia double precision not null,
    silhouette double precision,
    davies_bouldin double precision,
    calinski_harabasz double precision,
    is_elbow boolean not null default false,
    is_chosen boolean not null default false,
    primary key (run_id, k)
);

create table segmentation.segment_profiles (
    run_id bigint not null references segmentation.runs (run_id) on delete cascade,
    segment_id integer not null,
    segment_name text not null,
    customer_count bigint not null,
    customer_share double precision not null,
    avg_age double precision,
    avg_annual_income_k double precision,
    avg_spending_score double precision,
    female_share double precision,
    median_age double precision,
    median_annual_income_k double precision,
    median_spending_score double precision,
    recommendation text not null,
    centroid jsonb not null,
    primary key (run_id, segment_id),
    unique (run_id, segment_name)
);

-- The largest table (one row per customer and run): no foreign keys, so COPY runs at full
-- speed; the publish step writes it from the same data as segment_profiles.
create table segmentation.customer_segments (
    run_id bigint not null,
    customer_id bigint not null,
    segment_id integer not null,
    distance_to_centroid double precision not null,
    gender text,
    age smallint,
    annual_income_k numeric,
    spending_score smallint,
    primary key (run_id, customer_id)
);
"""

TABLE_COMMENTS = {
    "import_batches": "One row per imported file: counts add up to rows_read when status = succeeded.",
    "import_rejects": "Every rejected input line, verbatim, with its line number (header = line 1) and reason.",
    "customers": "Latest known attributes of each customer, keyed by the export's customer id.",
    "runs": "One row per segmentation run; status published marks the versions the views show.",
    "k_evaluations": "One row per run and candidate number of segments k, with every criterion.",
    "segment_profiles": "One row per run and segment: size, averages in original units, name, advice.",
    "customer_segments": "One row per run and customer: the assigned segment and the fitted attributes.",
}

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
"""

CURRENT_SEGMENT_PROFILES = """
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
"""

RUN_HISTORY = """
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
"""

#: Definitions of the views this migration creates (tests compare sql/views/ with the latest).
VIEW_SQL = {
    "current_customer_segments": CURRENT_CUSTOMER_SEGMENTS,
    "current_segment_profiles": CURRENT_SEGMENT_PROFILES,
    "run_history": RUN_HISTORY,
}

VIEW_COMMENTS = {
    "current_customer_segments": (
        "Grain: one row per customer of the latest published run. Segment of each customer.",
        {
            "customer_id": "Customer id from the retailer's export.",
            "segment_id": "Segment number; stable from run to run for matching segments.",
            "segment_name": "Readable segment name derived from its feature levels.",
            "gender": "Gender at fit time (Female, Male or null).",
            "age": "Age in years at fit time.",
            "annual_income_k": "Annual income in thousands of dollars at fit time.",
            "spending_score": "Spending score, 1 (lowest) to 100 (highest), at fit time.",
            "distance_to_centroid": "Distance to the segment centre in scaled feature units (standard deviations).",
            "run_id": "Run that produced this assignment (see run_history).",
            "published_at": "When that run was published.",
        },
    ),
    "current_segment_profiles": (
        "Grain: one row per segment of the latest published run. Size, averages, name and advice.",
        {
            "segment_id": "Segment number; stable from run to run for matching segments.",
            "segment_name": "Readable segment name derived from its feature levels.",
            "customer_count": "Customers in the segment.",
            "customer_share": "Share of the run's customers in the segment (0..1); shares sum to 1.",
            "avg_age": "Mean age in years.",
            "avg_annual_income_k": "Mean annual income in thousands of dollars.",
            "avg_spending_score": "Mean spending score (1..100).",
            "female_share": "Share of customers with gender Female among those with a known gender (0..1).",
            "recommendation": "Suggested marketing action for the segment.",
            "run_id": "Run that produced this profile (see run_history).",
            "published_at": "When that run was published.",
        },
    ),
    "run_history": (
        "Grain: one row per segmentation run, newest first, including failed and held runs.",
        {
            "run_id": "Run number, increasing.",
            "started_at": "When the run started.",
            "finished_at": "When the run ended (null while running).",
            "status": "running, published, held, failed, abandoned or cancelled.",
            "k": "Number of segments fitted.",
            "silhouette": "Mean silhouette of the fitted segments (-1..1, higher is better separated).",
            "n_customers": "Active customers segmented.",
            "published_at": "When the run became the current one (null if never published).",
            "rationale": "Why this number of segments was chosen.",
            "features": "Features the segments were fitted on.",
            "error": "Reason a run failed or was held.",
        },
    ),
}


def _comment(kind: str, name: str, text: str) -> None:
    # Comments are constants of this file, never user data; quote them as SQL literals.
    op.execute(f"comment on {kind} {name} is '{text.replace(chr(39), chr(39) * 2)}'")


def upgrade() -> None:
    op.execute("create schema if not exists segmentation")
    op.execute(TABLES)
    for table, text in TABLE_COMMENTS.items():
        _comment("table", f"segmentation.{table}", text)
    for view_sql in VIEW_SQL.values():
        op.execute(view_sql)
    for view, (view_text, columns) in VIEW_COMMENTS.items():
        _comment("view", f"segmentation.{view}", view_text)
        for column, text in columns.items():
            _comment("column", f"segmentation.{view}.{column}", text)


def downgrade() -> None:
    for view in VIEW_COMMENTS:
        op.execute(f"drop view if exists segmentation.{view}")
    for table in (
        "customer_segments",
        "segment_profiles",
        "k_evaluations",
        "runs",
        "customers",
        "import_rejects",
        "import_batches",
    ):
        op.execute(f"drop table if exists segmentation.{table}")
