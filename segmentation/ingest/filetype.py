"""Files that are not CSV text, told by their first bytes: what they are and what to do instead.

An export saved as a workbook, compressed, or written as UTF-16 would otherwise be refused
with a puzzling message about its header or its encoding.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from segmentation.errors import ImportRefused, describe

#: leading bytes of files that are not CSV text -> what the file is and what to do instead
_SIGNATURES = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "is an Excel 97-2003 workbook (.xls), not a CSV: open it in Excel and save"
                                          " it as CSV UTF-8 (File > Save As > CSV UTF-8)"),
    (b"\x89PNG\r\n\x1a\n", "is a PNG image, not a CSV: import the customer export itself"),
    (b"%PDF", "is a PDF document, not a CSV: export the customer list as CSV from the system it comes from"),
    (b"\x1f\x8b", "is gzip-compressed: decompress it first (gunzip) and import the CSV inside"),
    (b"BZh", "is bzip2-compressed: decompress it first (bunzip2) and import the CSV inside"),
    (b"\xfd7zXZ\x00", "is xz-compressed: decompress it first (unxz) and import the CSV inside"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed: decompress it first (unzstd) and import the CSV inside"),
    (b"\xff\xfe\x00\x00", "is UTF-32 text, not UTF-8: save it as CSV UTF-8 and import that file"),
    (b"\xff\xfe", "is UTF-16 text (Excel's \"Unicode Text\"), not UTF-8: save it as CSV UTF-8 and import that file"),
    (b"\xfe\xff", "is UTF-16 text (Excel's \"Unicode Text\"), not UTF-8: save it as CSV UTF-8 and import that file"),
)


def _zip_kind(path: Path) -> str:
    """What a zip-format file is, by its members, and what to do instead."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            mimetype = archive.read("mimetype")[:100] if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError):
        names, mimetype = [], b""
    if any(name.startswith("xl/") for name in names) or (not names and path.suffix.lower() in (".xlsx", ".xlsm")):
        return "is an Excel workbook, not a CSV: open it in Excel and save it as CSV UTF-8 (File > Save As > CSV UTF-8)"
    if b"spreadsheet" in mimetype:
        return "is an OpenDocument spreadsheet, not a CSV: open it in LibreOffice Calc and save it as CSV (UTF-8)"
    if any(name.startswith("word/") for name in names) or b"text" in mimetype:
        return "is a word-processor document, not a CSV: export the customer list as CSV"
    return "is a zip archive, not a CSV: unzip it and import the CSV inside"


def refuse_what_is_not_csv(path: Path) -> None:
    """Raise ImportRefused saying what the file is when its first bytes show it is no CSV text."""
    with path.open("rb") as handle:
        start = handle.read(8)
    if start.startswith(b"PK\x03\x04") or start.startswith(b"PK\x05\x06"):  # a zip (xlsx, ods, docx) or an empty one
        raise ImportRefused(f"{path} {_zip_kind(path)}")
    for signature, what in _SIGNATURES:
        if start.startswith(signature):
            raise ImportRefused(f"{path} {what}")


def check_readable(path: Path, what: str = "file") -> None:
    """Raise ImportRefused unless `path` is a file this process can read (said before any batch
    or run row is written: a missing file uses up no id and touches nothing). `what` names it
    in the message, e.g. "--csv"."""
    if path.is_dir():
        raise ImportRefused(f"{path} ({what}) is a folder; give the CSV file itself")
    if not path.exists():
        raise ImportRefused(f"{path} ({what}): no such file; check the path")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise ImportRefused(f"{path} ({what}): cannot be read: {describe(error).removeprefix(f'{path}: ')}") from None
