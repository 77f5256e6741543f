"""Import a customer CSV described by the data-set declaration into `segmentation_internal.customers`.

Grain: one input record, a line or several when a quoted field holds line breaks. Every
record ends up inserted, updated, unchanged or in `import_rejects` (line number, raw text,
reason), and the batch counts add up.

The declaration (`segmentation.dataset.Dataset`) says which header is the customer id and
which columns to keep, with their types and ranges. Each customer is stored as its id (text)
and `attributes`, the validated values as text in declaration order (see `parse_value`).

The file is streamed in ~1 MiB blocks through one COPY (CSV format); memory stays bounded by
the block size. All row rules are applied in Python, in one of two ways that store exactly
the same thing:

- a block whose lines are all plain (`plain_line_pattern`: the right number of fields, each
  value already valid, within its range and in a spelling whose stored form is known) is
  checked by one regular expression and rewritten into COPY records by one generated list
  comprehension, with no per-value Python logic;
- any other block is read line by line (`parse_line`), through the csv module when the line
  has quotes, and every value is checked and normalised by `parse_value`.

Into an empty `customers` table the records are copied straight in (the first load): the
COPY itself is the whole load. Otherwise every line goes into a temporary staging table, and
duplicates, the merge into `customers`, deactivation and the counts are done by PostgreSQL in
set operations. No value is ever cast in SQL, so no value can fail there.

One module per responsibility:

- `rules`: the header's mapping and the row rules per column type (pure functions);
- `plain`: the fast path, regular expressions of plain lines and their converters;
- `filetype`: files that are not CSV text (workbooks, archives, UTF-16), told by their first bytes;
- `source`: reading the file (blocks, line ends, lines too long to hold, the header, progress);
- `records`: data lines into COPY records (records that span lines), streamed to the server;
- `load`: the batch row, the first load and the import's result;
- `merge`: the staged load (duplicates, merge, deactivation);
- `prefix`: recognising a file that starts with the last import's file, so only its tail is read.
"""

from segmentation.dataset import BOOLEAN_WORDS, normalise_header
from segmentation.errors import ImportRefused
from segmentation.ingest.load import (
    ImportResult,
    begin_batch,
    ensure_dataset,
    fail_batch,
    import_file,
    load_file,
)
from segmentation.ingest.plain import integer_range_pattern, plain_line_pattern
from segmentation.ingest.rules import (
    ELLIPSIS,
    ColumnLayout,
    ParsedLine,
    RowRejected,
    map_header,
    parse_customer_id,
    parse_line,
    parse_value,
    reason_pattern,
)
from segmentation.ingest.source import BLOCK_BYTES

__all__ = [
    "BLOCK_BYTES", "BOOLEAN_WORDS", "ELLIPSIS", "ColumnLayout", "ImportRefused", "ImportResult", "ParsedLine",
    "RowRejected", "begin_batch", "ensure_dataset", "fail_batch", "import_file", "integer_range_pattern",
    "load_file", "map_header", "normalise_header", "parse_customer_id", "parse_line", "parse_value",
    "plain_line_pattern", "reason_pattern",
]
