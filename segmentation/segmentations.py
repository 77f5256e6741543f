"""Named segmentations: several side by side in one database, each with its own declaration.

A segmentation is a name (`segmentation = "NAME"` in segment.toml or `--segmentation NAME`;
`default` without one) and the declaration its runs must keep: the data set (id and columns,
with their types, categories and transforms), the features and where customers come from (an
export, a `source` table, or orders). Everything a run writes carries the segmentation's id, so a
run of one name never changes another's customers, runs, segment ids or views.

A run whose declaration differs from the stored one is refused before it imports anything, with
one line saying what differs; `--new-version` stores the new declaration as the next version of
the same name (its runs then number their segments afresh). Labels, units, export headers and
ranges may change without a new version: they say how values are read or shown, not what they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation.errors import ConfigurationError, SegmentationError
from segmentation.publish.views import DEFAULT_NAME, Target, drop_views
from segmentation.settings import Settings

log = logging.getLogger(__name__)

#: an SQL identifier short enough for `segments_NAME` (PostgreSQL names are at most 63 bytes)
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


class DeclarationChanged(ConfigurationError):
    """A run declares its segmentation differently from the runs before it."""


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """One row of `segmentation_internal.segmentations`."""

    segmentation_id: int
    name: str
    version: int
    declaration: dict | None

    @property
    def target(self) -> Target:
        return Target(self.segmentation_id, self.name)


def check_name(name: str) -> str:
    """`name` if it can name a segmentation (lowercase SQL identifier, at most 40 characters)."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ConfigurationError(
            f"segmentation name {name!r}: use lowercase letters, digits and underscores, starting with a letter or"
            " underscore, at most 40 characters (it names the schema segments_NAME)"
        )
    return name


def declaration_of(settings: Settings) -> dict:
    """What a run of `settings` declares: the data set, the features and the source table."""
    return {"dataset": settings.declaration.describe(), "features": list(settings.features), "source": settings.source}


def _columns(declaration: dict) -> dict[str, dict]:
    return {column["name"]: column for column in (declaration.get("dataset") or {}).get("columns", [])}


def differences(stored: dict, declared: dict) -> list[str]:
    """What differs between two declarations in ways that change what the segments are, in words."""
    found = []
    old, new = stored.get("dataset") or {}, declared.get("dataset") or {}
    for key, word in (("id_column", "id column"), ("id_type", "id type")):
        if old.get(key) != new.get(key):
            found.append(f"{word} {old.get(key)!r} -> {new.get(key)!r}")
    old_columns, new_columns = _columns(stored), _columns(declared)
    removed = [name for name in old_columns if name not in new_columns]
    added = [name for name in new_columns if name not in old_columns]
    if removed:
        found.append("columns removed: " + ", ".join(removed))
    if added:
        found.append("columns added: " + ", ".join(added))
    for name in (name for name in new_columns if name in old_columns):
        for key in ("type", "values", "transform"):
            if old_columns[name].get(key) != new_columns[name].get(key):
                found.append(f"column {name} {key} {old_columns[name].get(key)!r} -> {new_columns[name].get(key)!r}")
    if old.get("derived") != new.get("derived"):
        found.append("input: " + ("orders" if old.get("derived") else "customers") + " -> "
                     + ("orders" if new.get("derived") else "customers"))
    if list(stored.get("features") or []) != list(declared.get("features") or []):
        found.append(f"features {', '.join(stored.get('features') or [])} -> {', '.join(declared.get('features') or [])}")
    if stored.get("source") != declared.get("source"):
        found.append(f"source {stored.get('source')!r} -> {declared.get('source')!r}")
    return found


def _row(connection: Connection, name: str, lock: bool = False) -> Segmentation | None:
    row = connection.execute(
        sa.text(
            "select segmentation_id, name, version, declaration from segmentation_internal.segmentations"
            " where name = :name" + (" for update" if lock else "")
        ),
        {"name": name},
    ).one_or_none()
    return Segmentation(row.segmentation_id, row.name, row.version, row.declaration) if row else None


def find(connection: Connection, name: str) -> Segmentation | None:
    """The segmentation called `name`, or None."""
    return _row(connection, check_name(name))


def resolve(connection: Connection, settings: Settings, new_version: bool = False) -> Segmentation:
    """The segmentation `settings` names, created on its first run; refused (DeclarationChanged,
    before anything is imported) when its declaration differs from the stored one, unless
    `new_version` starts the next version with the new declaration.

    Call it in its own transaction under the run lock: what it stores commits before the run.
    """
    name = check_name(settings.segmentation)
    declared = declaration_of(settings)
    found = _row(connection, name, lock=True)
    if found is None:
        segmentation_id = connection.execute(
            sa.text(
                "insert into segmentation_internal.segmentations (name, declaration)"
                " values (:name, cast(:declaration as jsonb)) returning segmentation_id"
            ),
            {"name": name, "declaration": json.dumps(declared)},
        ).scalar_one()
        log.info("segmentation %s created", name)
        return Segmentation(segmentation_id, name, 1, declared)
    changes = differences(found.declaration, declared) if found.declaration is not None else []
    if changes and not new_version:
        other = "another name (--segmentation NAME)" if name == DEFAULT_NAME else "another name"
        raise DeclarationChanged(
            f"segmentation {name} (version {found.version}) was declared differently: {'; '.join(changes)}."
            f" Nothing was imported. Run it under {other}, or pass --new-version to start version"
            f" {found.version + 1} of {name} with this declaration"
        )
    version = found.version + 1 if changes else found.version
    if changes:
        log.warning("segmentation %s: version %d starts (%s)", name, version, "; ".join(changes))
    if declared != found.declaration:  # a new version, or what may change freely (labels, units, headers)
        connection.execute(
            sa.text(
                "update segmentation_internal.segmentations set declaration = cast(:declaration as jsonb),"
                " version = :version, updated_at = now() where segmentation_id = :id"
            ),
            {"declaration": json.dumps(declared), "version": version, "id": found.segmentation_id},
        )
    return Segmentation(found.segmentation_id, name, version, declared)


def listing(connection: Connection) -> list[sa.Row]:
    """One row per segmentation (the `segmentation.segmentations` view), by name."""
    return connection.execute(sa.text("select * from segmentation.segmentations order by segmentation")).all()


#: the tables partitioned by segmentation (one partition each)
PARTITIONED = ("customers", "orders", "segment_stretches")


def drop(connection: Connection, name: str) -> dict[str, int]:
    """Remove the segmentation `name` with all its data and views; returns what was removed, counted.

    Its partitions are dropped, its rows deleted from the shared tables (runs and what hangs off
    them, import batches and their rejects). In the caller's transaction, under the run lock.
    """
    found = _row(connection, check_name(name), lock=True)
    if found is None:
        raise SegmentationError(f"there is no segmentation {name!r}; see segment segmentations")
    mine = {"id": found.segmentation_id}
    counts = connection.execute(
        sa.text(
            "select (select count(*) from segmentation_internal.runs where segmentation_id = :id) as runs,"
            " (select count(*) from segmentation_internal.customers where segmentation_id = :id) as customers,"
            " (select count(*) from segmentation_internal.orders where segmentation_id = :id) as order_lines,"
            " (select count(*) from segmentation_internal.import_batches where segmentation_id = :id) as imports"
        ),
        mine,
    ).one()._asdict()
    drop_views(connection, found.target)
    raw = connection.connection.driver_connection
    generations = connection.execute(
        sa.text("select distinct generation_id from segmentation_internal.runs"
                " where segmentation_id = :id and generation_id is not null"), mine,
    ).scalars().all()
    for generation in generations:
        raw.execute(sql.SQL("drop table if exists segmentation_internal.{}").format(
            sql.Identifier(f"current_segments_g{int(generation)}")))
    for table in PARTITIONED:
        raw.execute(sql.SQL("drop table if exists segmentation_internal.{}").format(
            sql.Identifier(f"{table}_s{found.segmentation_id}")))
    for statement in (
        "delete from segmentation_internal.segment_transitions where run_id in"
        " (select run_id from segmentation_internal.runs where segmentation_id = :id)",
        "delete from segmentation_internal.segment_features where run_id in"
        " (select run_id from segmentation_internal.runs where segmentation_id = :id)",
        "delete from segmentation_internal.segment_profiles where run_id in"
        " (select run_id from segmentation_internal.runs where segmentation_id = :id)",
        "delete from segmentation_internal.runs where segmentation_id = :id",
        "delete from segmentation_internal.import_batches where segmentation_id = :id",
        "delete from segmentation_internal.table_versions where segmentation_id = :id",
        "delete from segmentation_internal.segmentations where segmentation_id = :id",
    ):
        connection.execute(sa.text(statement), mine)
    return counts
