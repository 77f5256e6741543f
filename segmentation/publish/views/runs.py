"""The views of runs: every run with its status and quality, and the customers that went from
each segment to each between two published runs."""

from __future__ import annotations

from psycopg import sql

from segmentation import display
from segmentation.publish.views.parts import PUBLISHED_DATE, SEGMENTATION, Parts

RUN_HISTORY_COMMENTS = {
    "segmentation": SEGMENTATION,
    "run_id": "Run number, increasing across segmentations; segment report RUN_ID writes the run's HTML report.",
    "started_at": "When the run started.",
    "finished_at": "When the run ended (null while running).",
    "status": "running, published, held, failed, abandoned or cancelled.",
    "k": "Number of segments fitted.",
    "silhouette": "Mean silhouette of the fitted segments (-1..1, higher is better separated).",
    "n_customers": "Active customers segmented.",
    "published_at": "When the run became the current one (null if never published).",
    "published_date": PUBLISHED_DATE,
    "rationale": "Why this number of segments was chosen.",
    "features": "Features the segments were fitted on.",
    "error": "Reason a run failed or was held.",
    "size_psi": "Population stability index of segment sizes against the previous published run.",
    "max_centroid_shift": "Largest centre shift of a matched segment against the previous published run (scaled units).",
    "n_outliers": "Customers flagged as outliers in this run.",
    "model": "refit: k chosen and K-Means fitted anew, every customer assigned; kept: the previous run's model still fits"
    " the data, only the customers that changed were assigned.",
    "n_reassigned": "Customers assigned by this run (all of them after a refit; the changed ones when the model was kept).",
    "n_moved": "Customers whose segment changed in this run (see segment_movers).",
    "forced_reason": "Set when --force-publish published a run that the health gate would have held: what it would"
    " have held it for (null otherwise).",
}


def run_history_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`run_history`: every run of the segmentation (of every one in a cross view), newest first."""
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per run, newest first\n"
        "select\n    runs.run_id,\n    runs.started_at,\n    runs.finished_at,\n    runs.status,\n    runs.k,\n"
        "    runs.silhouette,\n    runs.n_customers,\n    runs.published_at,\n"
        "    cast(runs.published_at as date) as published_date,\n    runs.rationale,\n    runs.features,\n"
        "    runs.error,\n    runs.size_psi,\n    runs.max_centroid_shift,\n    runs.n_outliers,\n"
        "    segmentations.name as segmentation,\n"
        "    case when runs.model_kept then 'kept' when runs.model_kept is not null then 'refit' end as model,\n"
        "    runs.n_reassigned,\n    runs.n_moved,\n    runs.forced_reason\n"
        "from segmentation_internal.runs as runs\njoin segmentation_internal.segmentations as segmentations\n"
        "    on segmentations.segmentation_id = runs.segmentation_id\nwhere {runs_filter}\norder by runs.run_id desc"
    ).format(view=parts.view("run_history"), runs_filter=parts.runs_filter("runs"))
    return statement, dict(RUN_HISTORY_COMMENTS)


_TRANSITION_COMMENTS = {
    "segmentation": SEGMENTATION,
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


def _transitions_sql(parts: Parts, name: str, grain: str, latest_only: bool) -> sql.Composed:
    """Customers per (segment in a published run, segment in the next published run of the same
    segmentation), from the counts each publish stored (`segment_transitions`)."""
    pairs = sql.SQL(
        "\n    and runs.run_id = (\n        select latest.run_id from segmentation_internal.runs as latest\n"
        "        where latest.segmentation_id = runs.segmentation_id and latest.status = 'published'\n"
        "        order by latest.published_at desc, latest.run_id desc\n        limit 1\n    )"
    ) if latest_only else sql.SQL("")
    runs_filter = parts.mine("runs") if latest_only else parts.runs_filter("runs")
    return sql.SQL(
        "create view {view} with (security_barrier = true) as\n-- grain: {grain}\n"
        "with moves as (\n    select\n        runs.segmentation_id,\n        moves.from_run_id,\n        moves.run_id as to_run_id,\n"
        "        runs.published_at as to_published_at,\n        moves.from_segment_id,\n        moves.to_segment_id,\n"
        "        moves.customer_count\n    from segmentation_internal.segment_transitions as moves\n"
        "    join segmentation_internal.runs as runs\n        on runs.run_id = moves.run_id\n"
        "    where runs.status = 'published' and {runs_filter}{pairs}\n),\n"
        "named as (\n    select\n        moves.*,\n"
        "        coalesce(from_profile.segment_name, '(new customers)') as from_segment_name,\n"
        "        coalesce(to_profile.segment_name, '(left)') as to_segment_name,\n"
        "        cast(moves.customer_count as double precision) / nullif(sum(moves.customer_count) over (\n"
        "            partition by moves.from_run_id, moves.to_run_id, moves.from_segment_id\n        ), 0) as share_of_from_segment\n"
        "    from moves\n    left join segmentation_internal.segment_profiles as from_profile\n"
        "        on from_profile.run_id = moves.from_run_id\n        and from_profile.segment_id = moves.from_segment_id\n"
        "    left join segmentation_internal.segment_profiles as to_profile\n"
        "        on to_profile.run_id = moves.to_run_id\n        and to_profile.segment_id = moves.to_segment_id\n)\n"
        "select\n    segmentations.name as segmentation,\n    named.from_run_id,\n    named.to_run_id,\n"
        "    named.from_segment_id,\n    named.from_segment_name,\n    named.to_segment_id,\n    named.to_segment_name,\n"
        "    'run ' || named.from_run_id || ': ' || named.from_segment_name as from_label,\n"
        "    'run ' || named.to_run_id || ': ' || named.to_segment_name as to_label,\n"
        "    named.customer_count,\n    named.share_of_from_segment,\n"
        "    {share_pct} as share_of_from_segment_pct,\n    named.to_published_at,\n"
        "    cast(named.to_published_at as date) as to_published_date\n"
        "from named\njoin segmentation_internal.segmentations as segmentations\n"
        "    on segmentations.segmentation_id = named.segmentation_id"
    ).format(
        view=parts.view(name), grain=sql.SQL(grain), runs_filter=runs_filter, pairs=pairs,
        share_pct=sql.SQL(display.sql_percent("named.share_of_from_segment")),
    )


def transitions_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    grain = "one row per (previous segment, current segment) pair between the two latest published runs"
    return _transitions_sql(parts, "segment_transitions", grain, latest_only=True), dict(_TRANSITION_COMMENTS)


def transitions_history_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    grain = "one row per (segment, segment) pair of every two consecutive published runs"
    return _transitions_sql(parts, "segment_transitions_history", grain, latest_only=False), dict(_TRANSITION_COMMENTS)


