"""The tables live in `segmentation_internal` (migration 0007): no code outside the migrations
names them in `segmentation`, where BI tools find only the views."""

import importlib.util
import re
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
MIGRATION = REPOSITORY / "migrations" / "versions" / "0007_internal_schema.py"
FOLDERS = ("segmentation", "jobs", "tests", "benchmarks", "sql", "migrations/env.py", "README.md", "docs")
PYTHON_IMPORT = re.compile(r"^\s*(from\s+segmentation[\w.]*\s+import\b|import\s+segmentation\b)")


def moved_tables() -> tuple[str, ...]:
    """The tables migration 0007 moves, as it lists them."""
    spec = importlib.util.spec_from_file_location("segmentation_migration_0007", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return (*module.TABLES, "alembic_version")


def test_no_code_outside_the_migrations_names_a_table_in_the_views_schema():
    reference = re.compile(rf"(?<![\w.])segmentation\.({'|'.join(moved_tables())})(_r\d+|\b)(?!\.\w)")
    listed = subprocess.run(
        ["git", "ls-files", *FOLDERS], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in listed:
        path = REPOSITORY / name
        if path.suffix not in {".py", ".sql", ".md", ".toml"} or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if reference.search(line) and not PYTHON_IMPORT.match(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert len(listed) > 50  # the listing found the repository's files
    assert offenders == [], "tables are in segmentation_internal now:\n" + "\n".join(offenders)
