"""The views of customers: each one's current segment, its history of stretches, who moved, and
recency, frequency and monetary value from the orders."""

from __future__ import annotations

from psycopg import sql

from segmentation.orders.rfm import rfm_select
from segmentation.publish.views.parts import (
    PUBLISHED_DATE,
    SEGMENT_COMMENTS,
    Parts,
    customer_key,
    id_comment,
    segment_columns,
)


def customer_segments_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`current_customer_segments`: every customer of the latest published run with its segment
    and declared columns as that run saw them."""
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per customer of the latest published run\n"
        "with {latest_run},\n"
        "segments as materialized (\n    select\n        profile.run_id,\n        profile.segment_id,\n"
        "        profile.segment_name,\n        {segment_columns}\n"
        "    from segmentation_internal.segment_profiles as profile\n"
        "    where profile.run_id = (select run_id from latest_run)\n)\n"
        "select\n    {id} as customer_id,\n    assigned.segment_id,\n    segments.segment_name,\n"
        "    segments.segment_label,\n    segments.segment_order,\n    segments.segment_color,\n    {attributes},\n"
        "    assigned.distance_to_centroid,\n    latest_run.run_id,\n    latest_run.published_at,\n"
        "    cast(latest_run.published_at as date) as published_date,\n"
        "    assigned.second_segment_id,\n    assigned.margin_to_second,\n    assigned.is_outlier,\n"
        "    since.published_at as in_segment_since\n"
        "from latest_run\njoin segmentation_internal.current_segments as assigned\n"
        "    on assigned.generation_id = (select generation_id from latest_run)\n"
        "join segments\n    on segments.segment_id = assigned.segment_id\n"
        "left join segmentation_internal.runs as since\n    on since.run_id = assigned.since_run_id"
    ).format(
        view=parts.view("current_customer_segments"), latest_run=parts.latest_run(),
        id=customer_key(parts.dataset, "assigned"), attributes=sql.SQL(",\n    ").join(parts.attributes("assigned")),
        segment_columns=segment_columns(" " * 8),
    )
    comments = {
        "customer_id": id_comment(parts.dataset, "the export"),
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name, e.g. High income, high spending.",
        **SEGMENT_COMMENTS,
        "distance_to_centroid": "Distance to the segment centre in scaled units (standard deviations by default).",
        "run_id": "The latest published run, which these rows are (see run_history).",
        "published_at": "When that run was published.",
        "published_date": PUBLISHED_DATE,
        "second_segment_id": "The next-nearest segment.",
        "margin_to_second": "Distance to the second segment minus distance to the own one; small means borderline.",
        "is_outlier": "True beyond Q3 + 3 x IQR of the distances in the segment (far from every centre).",
        "in_segment_since": "When the run that put the customer in this segment was published (see customer_segment_history).",
        **parts.attribute_comments("as the run saw it"),
    }
    return statement, comments


def customer_history_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`customer_segment_history`: one row per customer per stretch in one segment (slowly changing
    dimension: the current stretch has valid_to null)."""
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per customer per stretch of published runs in one segment\n"
        "with {latest_run},\nstretches as (\n"
        "    select closed.customer_id, closed.segment_id, closed.from_run_id, closed.to_run_id, closed.next_segment_id\n"
        "    from segmentation_internal.segment_stretches as closed\n    where {closed_mine}\n"
        "    union all\n"
        "    select assigned.customer_id, assigned.segment_id, assigned.since_run_id, null, null\n"
        "    from segmentation_internal.current_segments as assigned\n"
        "    where assigned.generation_id = (select generation_id from latest_run)\n)\n"
        "select\n    {id} as customer_id,\n    stretches.segment_id,\n"
        "    coalesce(named.segment_name, started.segment_name) as segment_name,\n"
        "    from_run.published_at as valid_from,\n    to_run.published_at as valid_to,\n"
        "    stretches.from_run_id,\n    stretches.to_run_id,\n    stretches.next_segment_id,\n"
        "    stretches.to_run_id is null as is_current\n"
        "from stretches\njoin segmentation_internal.runs as from_run\n    on from_run.run_id = stretches.from_run_id\n"
        "left join segmentation_internal.runs as to_run\n    on to_run.run_id = stretches.to_run_id\n"
        "left join segmentation_internal.segment_profiles as started\n"
        "    on started.run_id = stretches.from_run_id\n    and started.segment_id = stretches.segment_id\n"
        "left join segmentation_internal.segment_profiles as named\n"
        "    on stretches.to_run_id is null\n    and named.run_id = (select run_id from latest_run)\n"
        "    and named.segment_id = stretches.segment_id"
    ).format(
        view=parts.view("customer_segment_history"), latest_run=parts.latest_run(), closed_mine=parts.mine("closed"),
        id=customer_key(parts.dataset, "stretches"),
    )
    comments = {
        "customer_id": id_comment(parts.dataset, "the export"),
        "segment_id": "The segment of this stretch.",
        "segment_name": "Its name: the current name for the current stretch, else the name when the stretch began.",
        "valid_from": "When the run that put the customer in the segment was published.",
        "valid_to": "When the run that moved the customer out (or saw it leave) was published; null for the current stretch.",
        "from_run_id": "The run that began the stretch.",
        "to_run_id": "The run that ended it; null for the current stretch.",
        "next_segment_id": "Where the customer went when the stretch ended; null if it left (or for the current stretch).",
        "is_current": "True for the customer's current stretch.",
    }
    return statement, comments


def movers_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`segment_movers`: the customers whose segment changed in the latest published run."""
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per customer whose segment changed in the latest published run\n"
        "with {latest_run}\n"
        "select\n    {id} as customer_id,\n    moved.segment_id as from_segment_id,\n"
        "    from_profile.segment_name as from_segment_name,\n    moved.next_segment_id as to_segment_id,\n"
        "    to_profile.segment_name as to_segment_name,\n    moved.from_run_id as in_from_segment_since_run_id,\n"
        "    {attributes},\n    assigned.distance_to_centroid,\n    latest_run.run_id,\n    latest_run.published_at,\n"
        "    cast(latest_run.published_at as date) as published_date\n"
        "from latest_run\njoin segmentation_internal.segment_stretches as moved\n"
        "    on {moved_mine}\n    and moved.to_run_id = latest_run.run_id\n    and moved.next_segment_id is not null\n"
        "join segmentation_internal.current_segments as assigned\n"
        "    on assigned.generation_id = (select generation_id from latest_run)\n"
        "    and assigned.customer_id = moved.customer_id\n"
        "left join segmentation_internal.segment_profiles as from_profile\n"
        "    on from_profile.run_id = moved.from_run_id\n    and from_profile.segment_id = moved.segment_id\n"
        "left join segmentation_internal.segment_profiles as to_profile\n"
        "    on to_profile.run_id = latest_run.run_id\n    and to_profile.segment_id = moved.next_segment_id"
    ).format(
        view=parts.view("segment_movers"), latest_run=parts.latest_run(), moved_mine=parts.mine("moved"),
        id=customer_key(parts.dataset, "moved"), attributes=sql.SQL(",\n    ").join(parts.attributes("assigned")),
    )
    comments = {
        "customer_id": id_comment(parts.dataset, "the export"),
        "from_segment_id": "The segment the customer was in before the latest published run.",
        "from_segment_name": "Its name when the customer entered it.",
        "to_segment_id": "The segment the latest published run put the customer in.",
        "to_segment_name": "Its name in that run.",
        "in_from_segment_since_run_id": "The run that had put the customer in the earlier segment.",
        "distance_to_centroid": "Distance to the new segment's centre in scaled units.",
        "run_id": "The latest published run, in which the customer moved.",
        "published_at": "When that run was published.",
        "published_date": PUBLISHED_DATE,
        **parts.attribute_comments("now, as the latest run saw it"),
    }
    return statement, comments


def customer_rfm_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`customer_rfm`: recency, frequency and monetary value per customer from this segmentation's orders."""
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per customer with at least one purchase (a line with amount >= 0) before as_of\n{select}"
    ).format(view=parts.view("customer_rfm"), select=rfm_select(parts.target.segmentation_id, parts.dataset.id_type))
    comments = {
        "customer_id": id_comment(parts.dataset, "the order export"),
        "as_of": "Reference date: orders before it count; recency and tenure are measured to it.",
        "first_order_at": "First purchase (a line with amount >= 0).",
        "last_order_at": "Latest purchase before as_of (returns do not count).",
        "recency_days": "Days from the latest purchase to as_of (1 = the day before as_of).",
        "frequency": "Distinct orders with a purchase: distinct order ids, each line without an order id counting as one order.",
        "monetary": "Net amount of all lines before as_of, returns (negative amounts) subtracted (currency).",
        "average_order_value": "monetary / frequency (currency).",
        "tenure_days": "Days from the first purchase to as_of.",
        **{
            f"{letter}_score": f"{measure} quintile 1-5, 5 = {best} fifth; ties share the lower score."
            for letter, measure, best in (("r", "Recency", "most recent"), ("f", "Frequency", "most frequent"),
                                          ("m", "Monetary", "highest-value"))
        },
    }
    return statement, comments


