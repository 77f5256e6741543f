"""Import a customer CSV into `segmentation.customers`, losing nothing.

Grain: one input line. Every data line ends up inserted, updated, unchanged or in
`import_rejects` (line number, raw text, reason), and the batch counts add up.

The file is streamed: lines are validated in Python and sent in ~1 MiB blocks through one
COPY into a temporary staging table; duplicates, the merge into `customers` and the counts
are then done by PostgreSQL in set operations. Memory stays bounded by the block size.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation.errors import ImportRefused

log = logging.getLogger(__name__)

CANONICAL_COLUMNS = ("customer_id", "gender", "age", "annual_income_k", "spending_score")

#: Header spellings recognised without configuration, after `normalise_header`.
HEADER_ALIASES = {
    "customerid": "customer_id",
    "customer": "customer_id",
    "custid": "customer_id",
    "id": "customer_id",
    "clientid": "customer_id",
    "gender": "gender",
    "genre": "gender",
    "sex": "gender",
    "age": "age",
    "annualincomek": "annual_income_k",
    "annualincomek$": "annual_income_k",
    "annualincome": "annual_income_k",
    "income": "annual_income_k",
    "incomek": "annual_income_k",
    "spendingscore1100": "spending_score",
    "spendingscore": "spending_score",
    "score": "spending_score",
}

GENDERS = {"male": "Male", "m": "Male", "female": "Female", "f": "Female", "": None}
BLOCK_BYTES = 1 << 20
STAGE_TEMP_BUFFERS = "1GB"  # local buffers of the staging table (memory of the server backend)
MERGE_WORK_MEM = "256MB"
MAX_BIGINT = 2**63 - 1
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


def normalise_header(name: str) -> str:
    """Lower case with spaces, underscores, dashes, brackets and dots removed."""
    return re.sub(r"[\s_\-().\[\]/]+", "", name.strip().strip("'\"").lower())


@dataclasses.dataclass(frozen=True)
class ColumnLayout:
    """Where each canonical column sits in the file, and what else the file has."""

    delimiter: str
    n_fields: int
    positions: dict[str, int]
    ignored: tuple[str, ...]


def map_header(header: list[str], column_map: dict[str, str], source: str) -> ColumnLayout:
    """Match header names to canonical columns; raise ImportRefused naming what is missing."""
    user_map = {normalise_header(name): target for name, target in column_map.items()}
    for name, target in column_map.items():
        if target not in CANONICAL_COLUMNS:
            raise ImportRefused(
                f"{source}: column_map maps {name!r} to {target!r};"
                f" expected one of {', '.join(CANONICAL_COLUMNS)}"
            )
    positions: dict[str, int] = {}
    ignored = []
    for index, name in enumerate(header):
        key = normalise_header(name)
        target = user_map.get(key) or HEADER_ALIASES.get(key)
        if target is None:
            ignored.append(name)
            continue
        if target in positions:
            raise ImportRefused(
                f"{source} line 1: columns {header[positions[target]]!r} and {name!r} both map to {target}"
            )
        positions[target] = index
    missing = [column for column in CANONICAL_COLUMNS if column not in positions]
    if missing:
        raise ImportRefused(
            f"{source} line 1: header has no column for {', '.join(missing)};"
            f" found {', '.join(repr(h) for h in header)}."
            " Rename the column or map it with the column_map setting"
        )
    return ColumnLayout(delimiter=",", n_fields=len(header), positions=positions, ignored=tuple(ignored))


# --- one line ----------------------------------------------------------------------------


class RowRejected(ValueError):
    """A line that cannot be loaded; the message is the reason stored with it."""


def _clean(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return value


def parse_customer_id(value: str) -> int:
    if value == "":
        raise RowRejected("customer id is empty")
    if not _WHOLE.fullmatch(value):
        raise RowRejected(f"customer id {value!r} is not a positive whole number")
    number = int(value)
    if number == 0:
        raise RowRejected(f"customer id {value!r} is not a positive whole number")
    if number > MAX_BIGINT:
        raise RowRejected(f"customer id {value!r} is too large (at most {MAX_BIGINT})")
    return number


def parse_gender(value: str) -> str | None:
    try:
        return GENDERS[value.lower()]
    except KeyError:
        raise RowRejected(f"gender {value!r} is not Male, Female, M, F or empty") from None


def _whole(value: str, label: str, low: int, high: int) -> int | None:
    if value == "":
        return None
    if not _WHOLE.fullmatch(value.lstrip("+-")) or value.startswith("+"):
        raise RowRejected(f"{label} {value!r} is not a whole number")
    number = int(value)
    if not low <= number <= high:
        raise RowRejected(f"{label} {number} is outside {low}..{high}")
    return number


def parse_income(value: str) -> str | None:
    """Annual income in k$, as normalised decimal text (exact, for the numeric column)."""
    if value == "":
        return None
    if not _DECIMAL.fullmatch(value):
        raise RowRejected(f"annual income {value!r} is not a number")
    number = float(value)
    if number < 0:
        raise RowRejected(f"annual income {value!r} is below 0")
    if number > 1e12:
        raise RowRejected(f"annual income {value!r} is implausibly large (over 1e12 k$)")
    # keep the digits as written (no binary rounding); strip a leading plus sign
    return value.lstrip("+")


def parse_line(line: str, layout: ColumnLayout) -> tuple[int | None, tuple[int, str | None, int | None, str | None, int | None] | None, str | None]:
    """Parse one data line.

    Returns (customer id or None, parsed row or None, reject reason or None). The id is
    returned even for a rejected line when it could be read, so that a full export does not
    deactivate a customer whose line was merely invalid.
    """
    if line.strip() == "":
        return None, None, "empty line"
    delimiter = layout.delimiter
    if '"' in line:
        if line.count('"') % 2:
            return None, None, "unbalanced double quote (a field's closing quote is missing)"
        try:
            fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
        except csv.Error as error:
            return None, None, f"cannot split the line into fields ({error})"
    else:
        fields = line.split(delimiter)
    if len(fields) != layout.n_fields:
        return None, None, f"{len(fields)} fields, expected {layout.n_fields}"
    positions = layout.positions
    customer_id = None
    try:
        customer_id = parse_customer_id(_clean(fields[positions["customer_id"]]))
        row = (
            customer_id,
            parse_gender(_clean(fields[positions["gender"]])),
            _whole(_clean(fields[positions["age"]]), "age", 0, 120),
            parse_income(_clean(fields[positions["annual_income_k"]])),
            _whole(_clean(fields[positions["spending_score"]]), "spending score", 1, 100),
        )
    except RowRejected as rejected:
        return customer_id, None, str(rejected)
    return customer_id, row, None


_FAST_GENDERS = {"Male": "Male", "Female": "Female", "male": "Male", "female": "Female", "M": "Male",
                 "F": "Female", "m": "Male", "f": "Female", "": "\\N"}


def fast_record(line_number: int, line: str, layout: ColumnLayout) -> str | None:
    """The staging COPY record of a line in the plainest form, or None to take `parse_line`.

    Only accepts what `parse_line` accepts with the same result (plain digits, no quotes or
    spaces), so the two paths always agree; anything unusual goes the careful way.
    """
    parts = line.split(layout.delimiter)
    if len(parts) != layout.n_fields or '"' in line:
        return None
    positions = layout.positions
    customer_id = parts[positions["customer_id"]]
    age = parts[positions["age"]]
    income = parts[positions["annual_income_k"]]
    spending = parts[positions["spending_score"]]
    gender = _FAST_GENDERS.get(parts[positions["gender"]])
    if (
        gender is None
        or not (customer_id.isascii() and customer_id.isdigit() and len(customer_id) < 19)
        or not (age.isascii() and age.isdigit() and len(age) <= 3 and int(age) <= 120)
        or not (spending.isascii() and spending.isdigit() and 1 <= int(spending) <= 100)
        or not (income.isascii() and income.replace(".", "", 1).isdigit() and len(income) < 16)
        or int(customer_id) == 0
    ):
        return None
    return f"{line_number}\t{int(customer_id)}\t{gender}\t{age}\t{income}\t{spending}\t\\N\t\\N\n"


# --- the file ----------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"})


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    return str(value).translate(_COPY_ESCAPES)


@dataclasses.dataclass
class ImportResult:
    """What one import did, as stored in `import_batches`."""

    batch_id: int
    source_name: str
    status: str
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    rows_deactivated: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        text = (
            f"batch {self.batch_id}: {self.rows_read} lines read, {self.rows_inserted} inserted,"
            f" {self.rows_updated} updated, {self.rows_unchanged} unchanged,"
            f" {self.rows_rejected} rejected, {self.rows_deactivated} deactivated"
            f" ({self.seconds:.2f} s)"
        )
        if self.rows_inserted + self.rows_updated + self.rows_deactivated == 0:
            text += "; nothing changed"
        return text


def _numbered_lines(path: Path, digest: hashlib._Hash, progress) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without line end) for every line; the header is line 1.

    Reads, hashes and decodes 1 MiB blocks (cut after their last newline) rather than single
    lines: per-line calls were most of the import's Python time.
    """
    source = str(path)
    number = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(BLOCK_BYTES)
            digest.update(chunk)
            data = carry + chunk
            if not data:
                return
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # a line longer than the block: keep reading
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            if number == 0 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                line = number + data.count(b"\n", 0, error.start) + 1
                column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
                raise ImportRefused(
                    f"{source} line {line}: byte {data[error.start]:#04x} at column {column}"
                    " is not valid UTF-8; save the export as UTF-8 and import it again"
                ) from None
            lines = text.split("\n")
            if text.endswith("\n"):
                lines.pop()
            if "\r" in text:
                lines = [line[:-1] if line.endswith("\r") else line for line in lines]
            progress(len(data), len(lines))
            for line in lines:
                number += 1
                yield number, line
            if not chunk:
                return


def _detect_delimiter(header: str) -> str:
    counts = {delimiter: header.count(delimiter) for delimiter in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


class _Progress:
    """A tqdm bar (bytes, with rows and rows/s) on a terminal; otherwise a log line every 10 s."""

    def __init__(self, path: Path, log_every_seconds: float = 10.0) -> None:
        self.name = path.name
        self.total = path.stat().st_size
        self.bar = None
        self.seen = 0
        self.rows = 0
        self.started = self.last_log = time.monotonic()
        self.log_every_seconds = log_every_seconds
        if sys.stderr.isatty() and self.total > 8 * BLOCK_BYTES:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="B", unit_scale=True, desc=f"import {path.name}")

    def __call__(self, n_bytes: int, n_lines: int = 0) -> None:
        self.seen += n_bytes
        self.rows += n_lines
        rate = self.rows / max(time.monotonic() - self.started, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.rows:,} lines, {rate:,.0f} lines/s", refresh=False)
            self.bar.update(n_bytes)
        elif time.monotonic() - self.last_log > self.log_every_seconds:
            self.last_log = time.monotonic()
            log.info("import %s: %.0f%% read, %d lines, %.0f lines/s",
                     self.name, 100 * self.seen / max(self.total, 1), self.rows, rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


STAGE_TABLE = """
create temporary table import_stage (
    line_number bigint not null,
    customer_id bigint,
    gender text,
    age smallint,
    annual_income_k numeric,
    spending_score smallint,
    raw_line text,
    reason text
) on commit drop
"""


def begin_batch(connection: Connection, source_name: str, export_mode: str) -> int:
    """Insert a `running` batch row and return its id (commit it before the data transaction)."""
    return connection.execute(
        sa.text(
            "insert into segmentation.import_batches (source_name, export_mode)"
            " values (:source_name, :export_mode) returning batch_id"
        ),
        {"source_name": source_name, "export_mode": export_mode},
    ).scalar_one()


def fail_batch(connection: Connection, batch_id: int, message: str) -> None:
    connection.execute(
        sa.text(
            "update segmentation.import_batches set status = 'failed', finished_at = clock_timestamp(),"
            " error = :error where batch_id = :batch_id"
        ),
        {"batch_id": batch_id, "error": message},
    )


def load_file(
    connection: Connection,
    path: Path,
    batch_id: int,
    *,
    column_map: dict[str, str] | None = None,
    export_mode: str = "incremental",
) -> ImportResult:
    """Stream `path` into `customers` inside the caller's transaction.

    Raises ImportRefused (and loads nothing, once the caller rolls back) for a missing or
    unreadable file, an empty file, a bad header or invalid UTF-8.
    """
    started = time.monotonic()
    source = str(path)
    if not path.is_file():
        raise ImportRefused(f"{source}: no such file")
    if path.stat().st_size == 0:
        raise ImportRefused(f"{source}: the file is empty; expected a header line and customer lines")
    digest = hashlib.sha256()
    progress = _Progress(path)
    lines = _numbered_lines(path, digest, progress)
    try:
        _, header_text = next(lines)
        delimiter = _detect_delimiter(header_text)
        header = next(csv.reader([header_text], delimiter=delimiter, skipinitialspace=True))
        layout = dataclasses.replace(map_header(header, column_map or {}, source), delimiter=delimiter)
        if layout.ignored:
            log.info("%s: ignoring extra columns %s", source, ", ".join(layout.ignored))

        # Local buffers for the staging table (only settable before a session's first temporary
        # table, hence the savepoint); the default 8 MB makes a million-row stage spill to disk.
        with contextlib.suppress(sa.exc.DBAPIError), connection.begin_nested():
            connection.exec_driver_sql(f"set local temp_buffers = '{STAGE_TEMP_BUFFERS}'")
        # Hash joins and the duplicate check over millions of staged rows spill to disk at the
        # default 4 MB; this transaction is the only heavy one while the run lock is held.
        connection.exec_driver_sql(f"set local work_mem = '{MERGE_WORK_MEM}'")
        connection.exec_driver_sql(STAGE_TABLE)
        raw_connection = connection.connection.driver_connection
        rows_read = 0
        with raw_connection.cursor() as cursor:
            with cursor.copy(
                "copy import_stage (line_number, customer_id, gender, age, annual_income_k,"
                " spending_score, raw_line, reason) from stdin"
            ) as copy:
                block: list[str] = []
                block_size = 0
                for number, text in lines:
                    rows_read += 1
                    record = fast_record(number, text, layout)
                    if record is None:
                        customer_id, row, reason = parse_line(text, layout)
                        if reason is None:
                            record = "%d\t%d\t%s\t%s\t%s\t%s\t\\N\t\\N\n" % (
                                number,
                                row[0],
                                "\\N" if row[1] is None else row[1],
                                "\\N" if row[2] is None else row[2],
                                "\\N" if row[3] is None else row[3],
                                "\\N" if row[4] is None else row[4],
                            )
                        else:
                            record = (
                                f"{number}\t{_copy_text(customer_id)}\t\\N\t\\N\t\\N\t\\N\t"
                                f"{_copy_text(text)}\t{_copy_text(reason)}\n"
                            )
                    block.append(record)
                    block_size += len(record)
                    if block_size >= BLOCK_BYTES:
                        copy.write("".join(block))
                        block.clear()
                        block_size = 0
                if block:
                    copy.write("".join(block))
    finally:
        progress.close()
    if rows_read == 0:
        raise ImportRefused(f"{source}: the file has a header but no customer lines")

    _reject_superseded(connection, path, batch_id)
    counts = _merge(connection, batch_id, export_mode)
    result = ImportResult(
        batch_id=batch_id,
        source_name=path.name,
        status="succeeded",
        rows_read=rows_read,
        rows_inserted=counts["inserted"],
        rows_updated=counts["updated"],
        rows_unchanged=counts["unchanged"],
        rows_rejected=counts["rejected"],
        rows_deactivated=counts["deactivated"],
        seconds=time.monotonic() - started,
    )
    accounted = result.rows_inserted + result.rows_updated + result.rows_unchanged + result.rows_rejected
    if accounted != rows_read:  # a bug, never bad input: refuse rather than lose lines
        raise RuntimeError(f"{source}: {rows_read} lines read but {accounted} accounted for")
    connection.execute(
        sa.text(
            """
            update segmentation.import_batches set
                status = 'succeeded', finished_at = clock_timestamp(), source_sha256 = :sha256,
                rows_read = :rows_read, rows_inserted = :rows_inserted, rows_updated = :rows_updated,
                rows_unchanged = :rows_unchanged, rows_rejected = :rows_rejected,
                rows_deactivated = :rows_deactivated
            where batch_id = :batch_id
            """
        ),
        {
            "sha256": digest.hexdigest(),
            "batch_id": batch_id,
            **{field: getattr(result, field) for field in (
                "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected", "rows_deactivated"
            )},
        },
    )
    return result


def _reject_superseded(connection: Connection, path: Path, batch_id: int) -> None:
    """The same id twice in a file: the later valid line wins, earlier ones are rejected."""
    # Building a unique index is the cheapest duplicate test on millions of rows (one sort;
    # a GROUP BY took 11 s on 10M): if it builds, no id repeats and the window query is skipped.
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(f"set local maintenance_work_mem = '{MERGE_WORK_MEM}'")
            connection.exec_driver_sql(
                "create unique index import_stage_unique_id on import_stage (customer_id) where reason is null"
            )
        return
    except sa.exc.IntegrityError:
        pass  # some id repeats: find which lines lost
    superseded = connection.execute(
        sa.text(
            """
            with valid as (
                select line_number, max(line_number) over (partition by customer_id) as winner
                from import_stage
                where reason is null
            )
            select line_number, winner from valid where line_number <> winner order by line_number
            """
        )
    ).all()
    if not superseded:
        return
    # Re-read only those lines from the file (duplicates are rare) to keep them verbatim.
    wanted = dict(superseded)
    raw_lines: dict[int, str] = {}
    for number, text in _numbered_lines(path, hashlib.sha256(), lambda *_: None):
        if number in wanted:
            raw_lines[number] = text
            if len(raw_lines) == len(wanted):
                break
    connection.execute(
        sa.text(
            """
            update import_stage as stage
            set raw_line = loser.raw_line,
                reason = 'customer id ' || stage.customer_id || ' appears again on line '
                    || loser.winner || ', which replaces this line'
            from unnest(cast(:numbers as bigint[]), cast(:winners as bigint[]), cast(:raw_lines as text[]))
                as loser (line_number, winner, raw_line)
            where stage.line_number = loser.line_number
            """
        ),
        {
            "numbers": [number for number, _ in superseded],
            "winners": [winner for _, winner in superseded],
            "raw_lines": [raw_lines[number].replace("\x00", "\ufffd") for number, _ in superseded],
        },
    )


def _merge(connection: Connection, batch_id: int, export_mode: str) -> dict[str, int]:
    connection.execute(
        sa.text(
            "insert into segmentation.import_rejects (batch_id, line_number, raw_line, reason)"
            " select :batch_id, line_number, raw_line, reason from import_stage where reason is not null"
        ),
        {"batch_id": batch_id},
    )
    valid, rejected = connection.execute(
        sa.text("select count(*) filter (where reason is null), count(*) filter (where reason is not null) from import_stage")
    ).one()
    # Set-based merge (hash joins) rather than INSERT ... ON CONFLICT, which probes the key
    # index row by row: changed rows are updated, then new rows inserted; the rest are unchanged.
    updated = connection.execute(
        sa.text(
            """
            update segmentation.customers as current
            set gender = stage.gender,
                age = stage.age,
                annual_income_k = stage.annual_income_k,
                spending_score = stage.spending_score,
                is_active = true,
                last_batch_id = :batch_id,
                updated_at = now()
            from import_stage as stage
            where stage.reason is null
            and stage.customer_id = current.customer_id
            and (current.gender, current.age, current.annual_income_k, current.spending_score, current.is_active)
                is distinct from
                (stage.gender, stage.age, stage.annual_income_k, stage.spending_score, true)
            """
        ),
        {"batch_id": batch_id},
    ).rowcount
    inserted = connection.execute(
        sa.text(
            """
            insert into segmentation.customers (
                customer_id, gender, age, annual_income_k, spending_score, first_batch_id, last_batch_id
            )
            select stage.customer_id, stage.gender, stage.age, stage.annual_income_k, stage.spending_score,
                   :batch_id, :batch_id
            from import_stage as stage
            where stage.reason is null
            and not exists (
                select 1 from segmentation.customers as current where current.customer_id = stage.customer_id
            )
            """
        ),
        {"batch_id": batch_id},
    ).rowcount
    deactivated = 0
    if export_mode == "full":
        connection.exec_driver_sql("create index on import_stage (customer_id)")
        connection.exec_driver_sql("analyze import_stage")
        deactivated = connection.execute(
            sa.text(
                """
                update segmentation.customers as current
                set is_active = false, last_batch_id = :batch_id, updated_at = now()
                where current.is_active
                and not exists (select 1 from import_stage as stage where stage.customer_id = current.customer_id)
                """
            ),
            {"batch_id": batch_id},
        ).rowcount
    return {
        "inserted": inserted,
        "updated": updated,
        "unchanged": valid - inserted - updated,
        "rejected": rejected,
        "deactivated": deactivated,
    }
