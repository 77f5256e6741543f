"""Variants of a benchmark's file for the nightly re-import cases: lines appended, lines changed.

An import that recognises the last import's file at the start of the new one reads only the
appended lines; a change anywhere before the end makes it read the whole file again. The
benchmarks measure both with these files (generated once, kept in the work directory).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

#: one data line in this many is changed in the `changed` variant (1%)
CHANGE_EVERY = 100


def appended(path: Path, lines: Callable[[], Iterable[str]], suffix: str = "appended") -> Path:
    """`path` followed by `lines()` (each ending in a line end), written once next to it."""
    target = path.with_name(f"{path.stem}_{suffix}.csv")
    if not target.exists():
        partial = target.with_suffix(".partial")
        with partial.open("w", encoding="utf-8", newline="") as out:
            with path.open(encoding="utf-8", newline="") as source:
                shutil.copyfileobj(source, out, 1 << 24)
            out.writelines(lines())
        partial.rename(target)
    return target


def changed(path: Path, change: Callable[[str], str], suffix: str = "changed") -> Path:
    """`path` with one data line in CHANGE_EVERY, spread over the whole file, passed through
    `change` (a line in, the changed line out, line end kept), written once next to it."""
    target = path.with_name(f"{path.stem}_{suffix}.csv")
    if not target.exists():
        partial = target.with_suffix(".partial")
        with partial.open("w", encoding="utf-8", newline="") as out, path.open(encoding="utf-8", newline="") as source:
            out.write(next(source))
            for number, line in enumerate(source):
                out.write(change(line) if number % CHANGE_EVERY == CHANGE_EVERY // 2 else line)
        partial.rename(target)
    return target


def first_lines(path: Path, count: int) -> list[str]:
    """The first `count` data lines of `path` (after its header)."""
    with path.open(encoding="utf-8", newline="") as source:
        next(source)
        return [line for _, line in zip(range(count), source)]
