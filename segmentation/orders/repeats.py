"""Order lines exported twice: in a file with an order id column, a line that repeats an
earlier line of the same file exactly (every field, the ignored ones too) is that line again,
not a second purchase. It is rejected (`import_rejects`: "repeats line N exactly") and so
counted once. Lines that differ in any field (two items of one order at the same price, told
apart by a product column) are both kept; so are identical lines in a file without order ids,
where they may be two purchases.

Found in bounded memory: the import hashes every data line as it streams (8 bytes a line),
sorts the hashes at the end, reads again only the lines whose hash repeats and compares their
text; then one set-based statement turns the surplus rows (the stored or staged copies of
those lines' content) into the rejects.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation.ingest.records import storable
from segmentation.ingest.rules import ELLIPSIS, RowRejected, parse_line
from segmentation.ingest.source import Block, LongLine, _numbered_lines

REASON = "repeats line {} exactly (an order line exported twice): counted once"
PATTERN = REASON.format(ELLIPSIS)
#: an order line's content in a stored or staged row, null-safe, for `{table}`
SAME_CONTENT = (
    "{table}.customer_id = repeat.customer_id and coalesce({table}.order_id, '') = coalesce(repeat.order_id, '')"
    " and {table}.ordered_at = repeat.ordered_at and {table}.amount is not distinct from repeat.amount"
    " and {table}.quantity is not distinct from repeat.quantity"
    " and {table}.unit_price is not distinct from repeat.unit_price"
)


_CONTENT = ("{table}.customer_id, coalesce({table}.order_id, ''), {table}.ordered_at, {table}.amount,"
            " {table}.quantity, {table}.unit_price")


class LineHashes:
    """A hash of every data line in file order (0 for a line too long to hold), to find repeats."""

    def __init__(self) -> None:
        self.first: int | None = None  # the number of the first line hashed
        self.chunks: list[np.ndarray] = []

    def add(self, piece: Block | LongLine) -> None:
        if self.first is None:
            self.first = piece.number if isinstance(piece, LongLine) else piece.first
        if isinstance(piece, LongLine):
            self.chunks.append(np.zeros(1, dtype=np.int64))
            return
        lines = piece.text.split("\n")[:-1]
        self.chunks.append(np.fromiter(map(hash, lines), dtype=np.int64, count=len(lines)))

    def candidates(self) -> list[int]:
        """Numbers of the lines whose hash another line shares (those repeated, and a rare collision)."""
        if not self.chunks:
            return []
        hashes = np.concatenate(self.chunks)
        self.chunks = [hashes]
        ordered = np.sort(hashes)
        shared = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        shared = shared[shared != 0]
        if not len(shared):
            return []
        return [int(index) + self.first for index in np.flatnonzero(np.isin(hashes, shared))]


@dataclasses.dataclass(frozen=True)
class Repeat:
    """A line that repeats an earlier one exactly: its number, the earlier line's, its text and
    its order record (`customer_id,order_id,ordered_at,amount,quantity,unit_price`, CSV)."""

    line: int
    first: int
    text: str
    record: str


def find_repeats(path: Path, hashes: LineHashes, writer) -> list[Repeat]:
    """The valid lines of `path` that repeat an earlier line exactly, read again from the file
    (only the lines whose hash repeats); `writer` (an `_OrderWriter`) reads them as the import did.
    A line that is part of a record spanning lines is never taken for a repeat."""
    wanted = set(hashes.candidates())
    if not wanted:
        return []
    texts: dict[int, str] = {}
    for number, text in _numbered_lines(path, hashlib.sha256(), lambda *_: None, writer.layout.encoding):
        if number in wanted:
            texts[number] = text
            if len(texts) == len(wanted):
                break
    by_text: dict[str, list[int]] = collections.defaultdict(list)
    for number in sorted(texts):
        if texts[number].count('"') % 2 == 0:
            by_text[texts[number]].append(number)
    repeats = []
    for text, numbers in by_text.items():
        if len(numbers) < 2:
            continue
        parsed = parse_line(text, writer.layout, writer.dataset)
        if parsed.reason is not None:
            continue  # rejected anyway, every time it appears
        try:
            record = writer._record(parsed)
        except RowRejected:
            continue
        repeats.extend(Repeat(number, numbers[0], text, record) for number in numbers[1:])
    return sorted(repeats, key=lambda repeat: repeat.line)


def _repeat_table(connection: Connection, repeats: list[Repeat]) -> None:
    """The temporary table `order_repeat`: each repeat's content, line number, raw text and reason."""
    connection.exec_driver_sql(
        "create temporary table order_repeat (customer_id text collate \"C\", order_id text, ordered_at timestamp,"
        " amount numeric, quantity numeric, unit_price numeric, line_number bigint, raw_line text, reason text)"
        " on commit drop"
    )
    rows = []
    for repeat in repeats:
        fields = [field or None for field in next(csv.reader([repeat.record]))]
        rows.append(dict(zip(("customer_id", "order_id", "ordered_at", "amount", "quantity", "unit_price"), fields),
                         line_number=repeat.line, raw_line=storable(repeat.text),
                         reason=REASON.format(repeat.first)))
    connection.execute(
        sa.text(
            "insert into order_repeat values (:customer_id, :order_id, cast(:ordered_at as timestamp),"
            " cast(:amount as numeric), cast(:quantity as numeric), cast(:unit_price as numeric), :line_number,"
            " :raw_line, :reason)"
        ),
        rows,
    )


def reject_stored(connection: Connection, orders: str, repeats: list[Repeat], batch_id: int) -> None:
    """Reject `repeats` after a load straight into `orders` (a segmentation's partition, batch `batch_id`): per content, as
    many of the batch's rows as it has repeats are deleted, and the repeats stored as rejects."""
    _repeat_table(connection, repeats)
    connection.execute(
        sa.text(
            f"""
            delete from {orders} as stored
            where stored.ctid in (
                select numbered.row_address
                from (
                    select stored.ctid as row_address, repeat.repeats,
                           row_number() over (partition by {_CONTENT.format(table="stored")} order by stored.ctid)
                               as occurrence
                    from {orders} as stored
                    join (select customer_id, order_id, ordered_at, amount, quantity, unit_price, count(*) as repeats
                          from order_repeat group by 1, 2, 3, 4, 5, 6) as repeat
                        on {SAME_CONTENT.format(table="stored")}
                    where stored.batch_id = :batch_id
                ) as numbered
                where numbered.occurrence <= numbered.repeats
            )
            """
        ),
        {"batch_id": batch_id},
    )
    connection.execute(
        sa.text(
            "insert into segmentation_internal.import_rejects (batch_id, line_number, raw_line, reason)"
            " select :batch_id, line_number, raw_line, reason from order_repeat"
        ),
        {"batch_id": batch_id},
    )


def reject_staged(connection: Connection, repeats: list[Repeat]) -> None:
    """Mark `repeats` rejected in `order_stage` (its valid rows of their content, the later ones,
    as many as there are repeats), with their line numbers, raw text and reason."""
    _repeat_table(connection, repeats)
    connection.exec_driver_sql(
        f"""
        update order_stage as stage
        set line_number = wanted.line_number, raw_line = wanted.raw_line, reason = wanted.reason
        from (
            select staged.record_number, repeat.line_number, repeat.raw_line, repeat.reason
            from (
                select stage.*, row_number() over (partition by {_CONTENT.format(table="stage")}
                                                   order by stage.record_number) - 1 as occurrence
                from order_stage as stage
                where stage.reason is null
                and stage.customer_id in (select customer_id from order_repeat)
            ) as staged
            join (
                select order_repeat.*, row_number() over (partition by {_CONTENT.format(table="order_repeat")}
                                                          order by order_repeat.line_number) as occurrence
                from order_repeat
            ) as repeat on {SAME_CONTENT.format(table="staged")} and repeat.occurrence = staged.occurrence
        ) as wanted
        where stage.record_number = wanted.record_number
        """
    )


class TailRepeats(Exception):
    """A line of the tail of a prefix import has the content of a stored line, with an order id:
    it may repeat a line of the prefix, which only reading the whole file can tell."""


def check_tail(connection: Connection, orders: str, batch_id: int) -> None:
    """Raise TailRepeats when a line batch `batch_id` inserted has the content (customer, order id,
    time, amount) of a line stored by an earlier batch."""
    found = connection.execute(
        sa.text(
            f"""
            select exists (
                select 1
                from {orders} as tail
                join {orders} as stored
                    on stored.customer_id = tail.customer_id and stored.order_id = tail.order_id
                    and stored.ordered_at = tail.ordered_at and stored.amount = tail.amount
                where tail.batch_id = :batch_id and stored.batch_id <> :batch_id
            )
            """
        ),
        {"batch_id": batch_id},
    ).scalar_one()
    if found:
        raise TailRepeats
