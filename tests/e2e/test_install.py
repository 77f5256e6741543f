"""The production install: the wheel, built from this tree, in a fresh venv without the test extras.

Slow (it builds a wheel and installs every dependency into a new venv): left out of the fast
subset (`-m "not slow"`).
"""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPOSITORY
from tests.e2e.test_cli import environment, query

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TEST_EXTRAS = ("pytest", "hypothesis", "testcontainers", "docker")  # psutil comes with the embedded server


def source_tree(target: Path) -> Path:
    """A copy of the files git tracks or would track here (no build/ left over from an earlier build)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPOSITORY / name
        if source.is_symlink() or source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)
    return target


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A new venv with the wheel installed as a user would: `pip install pg-customer-segments-*.whl`."""
    folder = tmp_path_factory.mktemp("install")
    tree = source_tree(folder / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder / "dist"), str(tree)],
                   check=True, capture_output=True, timeout=900)
    (wheel,) = (folder / "dist").glob("pg_customer_segments-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True, timeout=300)
    installed = subprocess.run([str(folder / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, timeout=1800)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return folder / "venv"


def installed_run(venv: Path, *args: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess:
    """Run a program of the venv from `cwd` (outside the checkout), as a shell with only that venv would."""
    env = {key: value for key, value in environment(**variables).items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_wheel_installs_segment_with_its_version_and_help_and_no_test_extras(venv, tmp_path):
    version = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["version"]
    shown = installed_run(venv, "segment", "--version", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout == f"segment (pg-customer-segments) {version}\n", shown.stderr
    helped = installed_run(venv, "segment", "-h", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: segment ") and "schedule" in helped.stdout
    listed = installed_run(venv, "pip", "list", "--format=json", cwd=tmp_path)
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert "pg-customer-segments" in names and not names & set(TEST_EXTRAS)


def du_megabytes(folder: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(folder)], capture_output=True, text=True, check=True).stdout.split()[0])


def test_the_installed_venv_is_smaller_than_the_test_install(venv):
    production, test = du_megabytes(venv), du_megabytes(Path(sys.prefix))
    print(f"installed venv: {production} MB; editable install with test extras: {test} MB")
    assert production < test


def installed_paths(venv: Path, cwd: Path) -> dict[str, str]:
    shown = installed_run(venv, "segment", "paths", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return dict(line.split(": ", 1) for line in shown.stdout.splitlines())


def test_the_package_carries_the_sample_the_sql_files_and_the_migrations(venv, tmp_path):
    paths = {what: Path(where.strip()) for what, where in installed_paths(venv, tmp_path).items() if "/" in where}
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    for what in ("sample customers", "view SQL", "dashboard queries", "migrations", "alembic.ini"):
        assert paths[what].is_relative_to(site_packages) and paths[what].exists(), what
    for folder, what in (("views", "view SQL"), ("dashboards", "dashboard queries")):
        shipped = sorted(path.name for path in paths[what].glob("*.sql"))
        assert shipped == sorted(path.name for path in (REPOSITORY / "sql" / folder).glob("*.sql")) and shipped
    assert paths["sample customers"].read_bytes() == (REPOSITORY / "segmentation/data/sample_customers.csv").read_bytes()


def test_the_installed_segment_runs_the_packaged_sample(venv, tmp_path, database_url):
    sample = installed_paths(venv, tmp_path)["sample customers"].strip()
    ran = installed_run(venv, "segment", "run", "--csv", sample, cwd=tmp_path, DATABASE_URL=database_url)
    assert ran.returncode == 0, ran.stderr
    assert "run 1 published: 300 customers" in ran.stdout
    assert query(database_url, "select status, n_customers from segmentation.run_history") == [("published", 300)]


def test_alembic_migrates_from_the_installed_package(venv, tmp_path, empty_database_url, template_database):
    alembic_ini = installed_paths(venv, tmp_path)["alembic.ini"].strip()
    upgraded = installed_run(venv, "alembic", "-c", alembic_ini, "upgrade", "head", cwd=tmp_path,
                             DATABASE_URL=empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    current = installed_run(venv, "alembic", "-c", alembic_ini, "current", cwd=tmp_path, DATABASE_URL=empty_database_url)
    heads = installed_run(venv, "alembic", "-c", alembic_ini, "heads", cwd=tmp_path, DATABASE_URL=empty_database_url)
    head = heads.stdout.split()[0]
    assert current.returncode == 0 and current.stdout.split()[0] == head, current.stderr
    views = query(empty_database_url, "select count(*) from information_schema.views where table_schema = 'segmentation'")
    assert views[0][0] > 0
