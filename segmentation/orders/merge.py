"""The staged order lines against one segmentation's partition of `segmentation_internal.orders`: which lines are new, which stored ones
a file that restates its orders no longer has. Set-based SQL on the temporary `order_stage`
(its valid lines have `reason` null) that `segmentation.orders.ingest` filled.

A line's identity is its content (KEY: customer, order id, time, amount) and its position among
identical lines. One hash full join pairs the file's lines with the stored ones; when every
content it pairs appears once on each side (the usual case: order ids, or times, tell lines
apart), its unpaired lines are the whole difference. Otherwise contents are counted on both
sides by two hash aggregates and only the contents whose counts differ are numbered line by line.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation.ingest.merge import _step

#: an order line's content, what identifies it with its position among identical lines
KEY = "{table}.customer_id, coalesce({table}.order_id, ''), {table}.ordered_at, {table}.amount"
MATCH = ("counts.customer_id = {table}.customer_id and counts.order_key = coalesce({table}.order_id, '')"
         " and counts.ordered_at = {table}.ordered_at and counts.amount = {table}.amount")


def merge_stage(connection: Connection, orders: str, batch_id: int, file_lines: int, restates: bool) -> tuple[int, int, int]:
    """Insert the stage's new lines into `orders` (a segmentation's partition, batch `batch_id`) and, when the file has order
    ids (`restates`), remove stored lines of its orders that it no longer has.
    Returns (lines inserted, lines removed, lines stored afterwards)."""
    with _step("pair the file's lines with the stored lines"):
        one_to_one, stored = _pair_lines(connection, orders, file_lines)
    if not one_to_one:
        with _step("contents whose counts differ"):
            _count_contents(connection, orders)
    insert, remove = (_insert_unpaired, _remove_unpaired) if one_to_one else (_insert_new, _remove_restated)
    with _step("insert new lines"):
        inserted = insert(connection, orders, batch_id)
    removed = 0
    if restates:
        with _step("remove lines of restated orders"):
            removed = remove(connection, orders)
    return inserted, removed, stored + inserted - removed


#: a stage line and a stored line of the same content (KEY)
SAME_CONTENT = ("stored.customer_id = stage.customer_id and coalesce(stored.order_id, '') = coalesce(stage.order_id, '')"
                " and stored.ordered_at = stage.ordered_at and stored.amount = stage.amount")


def _pair_lines(connection: Connection, orders: str, file_lines: int) -> tuple[bool, int]:
    """order_pairing: the file's lines no stored line has the content of (`unpaired_records`, record
    numbers) and the stored lines with an order id no line of the file has the content of
    (`unpaired_stored`, row addresses). Returns (one to one, lines stored): one to one is True when
    every paired content appears exactly once in the
    file and once in the table, so these are the new and the surplus lines; False when some content
    repeats on a side (then the pairs say nothing about positions among identical lines).

    One hash full join of the stage and `orders` (work_mem raised for it: its hash table of 10M
    lines takes about 750 MB), instead of two hash aggregates and a join of their results.
    """
    connection.exec_driver_sql("set local work_mem = '1GB'")
    connection.exec_driver_sql(
        f"""
        create temporary table order_pairing on commit drop as
        select count(*) filter (where stage.record_number is not null and stored.customer_id is not null) as pairs,
               coalesce(array_agg(stage.record_number) filter (where stored.customer_id is null), '{{}}')
                   as unpaired_records,
               coalesce(array_agg(stored.ctid) filter (where stage.record_number is null and stored.order_id <> ''),
                        '{{}}') as unpaired_stored,
               count(*) filter (where stage.record_number is null) as stored_unpaired
        from (select * from order_stage where reason is null) as stage
        full join {orders} as stored on {SAME_CONTENT}
        """
    )
    connection.exec_driver_sql("set local work_mem = '256MB'")
    pairs, new_lines, stored_unpaired = connection.exec_driver_sql(
        "select pairs, cardinality(unpaired_records), stored_unpaired from order_pairing"
    ).one()
    stored = connection.exec_driver_sql(f"select count(*) from {orders}").scalar_one()
    # sum over paired contents of (file count x stored count) equals the paired lines of each side
    # exactly when every paired content has one line on each side
    return pairs == file_lines - new_lines == stored - stored_unpaired, stored


def _insert_unpaired(connection: Connection, orders: str, batch_id: int) -> int:
    """Insert the file's unpaired lines (order_pairing), in file order."""
    return connection.execute(
        sa.text(
            f"""
            insert into {orders} (customer_id, order_id, ordered_at, amount, quantity, unit_price, batch_id)
            select stage.customer_id, stage.order_id, stage.ordered_at, stage.amount, stage.quantity, stage.unit_price,
                   :batch_id
            from order_stage as stage
            where stage.record_number in (select unnest(unpaired_records) from order_pairing)
            order by stage.record_number
            """
        ),
        {"batch_id": batch_id},
    ).rowcount


def _remove_unpaired(connection: Connection, orders: str) -> int:
    """Delete the stored lines no line of the file has the content of, when the file names their order."""
    if not connection.exec_driver_sql("select cardinality(unpaired_stored) > 0 from order_pairing").scalar_one():
        return 0
    return connection.exec_driver_sql(
        f"""
        delete from {orders} as stored
        where stored.ctid in (select unnest(unpaired_stored) from order_pairing)
        and stored.order_id in (select stage.order_id from order_stage as stage where stage.reason is null)
        """
    ).rowcount


def _count_contents(connection: Connection, orders: str) -> None:
    """order_counts: each content whose number of lines differs between the file and the table."""
    connection.exec_driver_sql(
        f"""
        create temporary table order_counts on commit drop as
        with in_file (customer_id, order_key, ordered_at, amount, file_count) as (
            select {KEY.format(table="stage")}, count(*)
            from order_stage as stage
            where stage.reason is null
            group by 1, 2, 3, 4
        ),
        in_table (customer_id, order_key, ordered_at, amount, stored_count) as (
            select {KEY.format(table="stored")}, count(*)
            from {orders} as stored
            where stored.customer_id in (select stage.customer_id from order_stage as stage where stage.reason is null)
            group by 1, 2, 3, 4
        )
        select coalesce(in_file.customer_id, in_table.customer_id) as customer_id,
               coalesce(in_file.order_key, in_table.order_key) as order_key,
               coalesce(in_file.ordered_at, in_table.ordered_at) as ordered_at,
               coalesce(in_file.amount, in_table.amount) as amount,
               coalesce(in_file.file_count, 0) as file_count, coalesce(in_table.stored_count, 0) as stored_count
        from in_file
        full join in_table
            on in_table.customer_id = in_file.customer_id and in_table.order_key = in_file.order_key
            and in_table.ordered_at = in_file.ordered_at and in_table.amount = in_file.amount
        where in_file.file_count is distinct from in_table.stored_count
        """
    )


def _insert_new(connection: Connection, orders: str, batch_id: int) -> int:
    """Insert the file's lines beyond the stored count of their content, in file order."""
    return connection.execute(
        sa.text(
            f"""
            insert into {orders} (customer_id, order_id, ordered_at, amount, quantity, unit_price, batch_id)
            select numbered.customer_id, numbered.order_id, numbered.ordered_at, numbered.amount, numbered.quantity,
                   numbered.unit_price, :batch_id
            from (
                select stage.*, counts.stored_count,
                       row_number() over (partition by {KEY.format(table="stage")} order by stage.record_number)
                           as occurrence
                from order_stage as stage
                join order_counts as counts on {MATCH.format(table="stage")}
                where stage.reason is null and counts.file_count > counts.stored_count
            ) as numbered
            where numbered.occurrence > numbered.stored_count
            order by numbered.record_number
            """
        ),
        {"batch_id": batch_id},
    ).rowcount


def _remove_restated(connection: Connection, orders: str) -> int:
    """Stored lines of an order the file names but no longer has (an order is identified by its id):
    per content of such an order, the stored copies beyond the file's count."""
    return connection.exec_driver_sql(
        f"""
        delete from {orders} as stored
        where stored.ctid in (
            select numbered.row_address
            from (
                select surplus.ctid as row_address, counts.file_count,
                       row_number() over (partition by {KEY.format(table="surplus")} order by surplus.ctid) as occurrence
                from {orders} as surplus
                join order_counts as counts on {MATCH.format(table="surplus")}
                where counts.stored_count > counts.file_count and counts.order_key <> ''
                and counts.order_key in (select stage.order_id from order_stage as stage where stage.reason is null)
            ) as numbered
            where numbered.occurrence > numbered.file_count
        )
        """
    ).rowcount
