"""What every view of a segmentation is made of: where it lives (`Target`), its customer id as
the views show it, the latest published run, the segment presentation columns, the comments
they share."""

from __future__ import annotations

import dataclasses

from psycopg import sql

from segmentation import display, view_columns
from segmentation.dataset import Column, Dataset

DEFAULT_NAME = "default"
DEFAULT_SCHEMA = "segmentation"
SCHEMA_PREFIX = "segments_"
READER_ROLE = "segmentation_reader"

_SQL_TYPES = {"number": "numeric", "whole": "bigint", "category": "text", "boolean": "boolean"}



@dataclasses.dataclass(frozen=True)
class Target:
    """Where one segmentation's views live: its id and name, and the schema they make."""

    segmentation_id: int
    name: str

    @property
    def schema(self) -> str:
        return schema_name(self.name)

    @property
    def cross(self) -> bool:
        """Whether the history views show every segmentation (the `segmentation` schema's do)."""
        return self.name == DEFAULT_NAME


def schema_name(segmentation: str) -> str:
    """The schema of a segmentation's views: `segmentation` for `default`, else `segments_NAME`."""
    return DEFAULT_SCHEMA if segmentation == DEFAULT_NAME else f"{SCHEMA_PREFIX}{segmentation}"


def customer_key(dataset: Dataset, alias: str) -> sql.Composable:
    """`alias.customer_id` as every view of the segmentation shows it: bigint for whole ids (the
    stored text is the number without leading zeros), text otherwise. The per-customer tables have
    an index on this very expression, so a lookup by id uses it."""
    column = sql.Identifier(alias, "customer_id")
    return sql.SQL("cast({} as bigint)").format(column) if dataset.id_type == "whole" else column


def id_comment(dataset: Dataset, where: str) -> str:
    kind = "a whole number" if dataset.id_type == "whole" else "text"
    return f"The customer's id as in {where} ({kind}; the same type in every view of this segmentation)."


def share_columns(dataset: Dataset) -> list[view_columns.Share]:
    """(view column, declared column, category value or "true" for a boolean's share), named by `view_columns`."""
    return [
        view_columns.Share(share.name, share.column, "true" if share.value is None else share.value)
        for share in view_columns.shares(dataset)
    ]


def describe(column: Column) -> str:
    text = column.label[:1].upper() + column.label[1:]
    return f"{text} ({column.unit})" if column.unit else text


class Parts:
    """SQL fragments shared by a segmentation's views."""

    def __init__(self, target: Target, dataset: Dataset):
        self.target = target
        self.dataset = dataset
        self.segmentation_id = sql.Literal(int(target.segmentation_id))

    def view(self, name: str) -> sql.Composable:
        return sql.Identifier(self.target.schema, name)

    def mine(self, alias: str) -> sql.Composable:
        """`alias.segmentation_id = <this segmentation>`."""
        return sql.SQL("{} = {}").format(sql.Identifier(alias, "segmentation_id"), self.segmentation_id)

    def runs_filter(self, alias: str) -> sql.Composable:
        """This segmentation's rows of `alias` (a runs-like relation), or every row in a cross view."""
        return sql.SQL("true") if self.target.cross else self.mine(alias)

    def latest_run(self) -> sql.Composable:
        return sql.SQL(
            "latest_run as (\n    select runs.run_id, runs.published_at, runs.generation_id\n"
            "    from segmentation_internal.runs as runs\n    where {} and runs.status = 'published'\n"
            "    order by runs.published_at desc, runs.run_id desc\n    limit 1\n)"
        ).format(self.mine("runs"))

    def attributes(self, alias: str) -> list[sql.Composable]:
        return [
            sql.SQL("cast({}[{}] as {}) as {}").format(
                sql.Identifier(alias, "attributes"), sql.Literal(position), sql.SQL(_SQL_TYPES[column.type]),
                sql.Identifier(column.name),
            )
            for position, column in enumerate(self.dataset.columns, start=1)
        ]

    def attribute_comments(self, what: str) -> dict[str, str]:
        return {column.name: f"{describe(column)}, {what} ({column.type})." for column in self.dataset.columns}


def segment_columns(indent: str, alias: str = "profile") -> sql.Composable:
    """Presentation columns of a segment (label, order, colour) for a profile row `alias`."""
    return sql.SQL(
        "{label} as segment_label,\n" + indent
        + f"cast(dense_rank() over (partition by {alias}.run_id order by {alias}.segment_id) as integer) as segment_order,\n"
        + indent + "{color} as segment_color"
    ).format(
        label=sql.SQL(display.sql_label(f"{alias}.segment_id", f"{alias}.segment_name")),
        color=sql.SQL(display.sql_color(f"{alias}.segment_id")),
    )


SEGMENT_COMMENTS = {
    "segment_label": "Short label for chart axes, unique within the run: S<segment_id> and the name up to its first comma,"
    f" at most {display.LABEL_LENGTH} characters.",
    "segment_order": "Position of the segment in its run by segment_id (1..k): sort bars and legends by it.",
    "segment_color": "Hex colour of the segment, the same in the report; follows segment_id, so it is kept from run to run.",
}
PUBLISHED_DATE = "Date of published_at in the session's time zone (for a daily grain)."
SEGMENTATION = "Name of the segmentation (see segmentation.segmentations); default is the one without a name."


