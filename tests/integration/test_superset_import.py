"""The bundle in a real Superset: its own import accepts it, keeps every dashboard's filters, and
each dashboard renders every chart without an error.

Optional (marker `superset`): it needs Superset installed in a venv of its own, found at
$SUPERSET_VENV, which must be set (a Superset lying about on the machine is not picked up: the
default test command, CI's, does not install Superset; see docs/dashboards.md), and Debian's
`chromium` for the rendering test. Without them each test skips, saying what is missing. The
Superset it starts is a throwaway on 127.0.0.1 with its metadata (SQLite, Superset's quick-start
default) in the test's temporary folder; the data stay in the test's PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from segmentation.bi import superset
from segmentation.dataset import MALL
from tests.browser import chromium, chromium_command
from tests.integration.test_bi_access import populated  # noqa: F401 - fixture
from tests.integration.test_superset_bundle import (  # noqa: F401 - fixture
    CHART_TITLES,
    COMPARED_TITLES,
    two_segmentations,
)

pytestmark = pytest.mark.superset

SUPERSET_VENV = Path(os.environ["SUPERSET_VENV"]) if os.environ.get("SUPERSET_VENV") else None
INSTALL = ("python3.11 -m venv /tmp/superset-venv && /tmp/superset-venv/bin/pip install 'apache-superset>=6,<7'"
           " rich cachetools 'flask-caching<2.4' psycopg2-binary")
CONFIG = """
SECRET_KEY = "throwaway-test-instance-{port}"
SQLALCHEMY_DATABASE_URI = "sqlite:///{folder}/superset.db"  # Superset's own metadata, not our data
AUTH_ROLE_PUBLIC = "Admin"  # a local throwaway: the headless browser needs no login
PUBLIC_ROLE_LIKE = "Admin"
WTF_CSRF_ENABLED = False
TALISMAN_ENABLED = False
"""
COMPARED = "Customer segments: every segmentation"
TITLES = {"Customer segments": CHART_TITLES, "Customer segments: rfm": CHART_TITLES, COMPARED: COMPARED_TITLES}
#: what Superset writes into a chart or the page when a query or the chart's form data is wrong
FAILURES = ("Sankey is a DAG", "Unexpected error", "permission denied", "does not exist", "Data error",
            "Request is incorrect", "No results were returned", "Not a valid")


@pytest.fixture
def superset_command():
    if SUPERSET_VENV is None:
        pytest.skip(f"SUPERSET_VENV is not set: these tests run against a Superset you install yourself ({INSTALL};"
                    " then SUPERSET_VENV=/tmp/superset-venv); CI does not install it")
    command = SUPERSET_VENV / "bin" / "superset"
    if not command.is_file():
        pytest.skip(f"Superset is not installed at {SUPERSET_VENV} (set SUPERSET_VENV; see docs/testing.md)")
    probe = subprocess.run([str(SUPERSET_VENV / "bin" / "python"), "-c", "import superset.cli.main"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:  # e.g. 6.1.0 from PyPI without rich or cachetools
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"Superset at {SUPERSET_VENV} does not start ({last}); install it as: {INSTALL}")
    return command


@pytest.fixture
def browser() -> str:
    return chromium()  # or skip, saying Chromium is absent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Throwaway:
    """A Superset with its metadata in `folder`, the bundle of `engine`'s database imported."""

    def __init__(self, command: Path, folder: Path, engine: sa.Engine):
        self.command, self.folder, self.port = command, folder, _free_port()
        (folder / "superset_config.py").write_text(CONFIG.format(port=self.port, folder=folder))
        self.env = {**os.environ, "SUPERSET_CONFIG_PATH": str(folder / "superset_config.py"), "FLASK_APP": "superset"}
        self.run("db", "upgrade")
        self.run("fab", "create-admin", "--username", "admin", "--firstname", "A", "--lastname", "B",
                 "--email", "admin@localhost", "--password", "admin")
        self.run("init")
        self.bundle = folder / "bundle.zip"
        url = engine.url
        with engine.connect() as connection:
            superset.write_bundle(connection, url, MALL, self.bundle, user=url.username or "postgres")
        self.imported = self.run("import-dashboards", "-p", str(self.bundle), "-u", "admin")
        if url.password:  # the placeholder is replaced as a user would, in Superset
            uri = self.metadata("select sqlalchemy_uri from dbs")[0][0]
            self.run("set-database-uri", "-d", superset.database_name(url), "-u",
                     uri.replace(superset.PASSWORD_MASK, url.password))

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.command), *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, cwd=self.folder)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result

    def metadata(self, statement: str) -> list[tuple]:
        """Rows of Superset's own store, read back."""
        store = sa.create_engine(f"sqlite:///{self.folder}/superset.db")
        with store.connect() as connection:
            rows = [tuple(row) for row in connection.execute(sa.text(statement))]
        store.dispose()
        return rows


def _skip_without_tcp(engine: sa.Engine) -> None:
    if not engine.url.host:
        pytest.skip("the test server listens on a Unix socket only (the embedded server), and the bundle's database"
                    " entry names a TCP host: set TEST_DATABASE_URL to a server on a host and port")


def test_superset_imports_a_dashboard_per_segmentation_with_its_filters(superset_command, two_segmentations,  # noqa: F811
                                                                        tmp_path):  # Superset first: skip early
    _skip_without_tcp(two_segmentations)
    instance = Throwaway(superset_command, tmp_path, two_segmentations)
    assert "error" not in instance.imported.stderr.lower().replace("error_", ""), instance.imported.stderr[-2000:]
    boards = {title: json.loads(metadata) for title, metadata in
              instance.metadata("select dashboard_title, json_metadata from dashboards")}
    assert set(boards) == set(TITLES)
    charts = instance.metadata("select slice_name, viz_type from slices")
    assert len(charts) == 2 * len(CHART_TITLES) + len(COMPARED_TITLES)
    assert {title for title, _ in charts} == CHART_TITLES | COMPARED_TITLES
    datasets = dict(instance.metadata("select id, table_name from tables"))
    assert {"current_segment_profiles", "current_segment_profiles (rfm)", "run_history (rfm)"} <= set(datasets.values())
    placed = {title: {chart_id for (chart_id,) in instance.metadata(
        "select slice_id from dashboard_slices join dashboards on dashboards.id = dashboard_id"
        f" where dashboard_title = '{title}'")} for title in boards}
    for title, metadata in boards.items():
        filters = {item["name"]: item for item in metadata["native_filter_configuration"]}
        chosen = "Segmentation" if title == COMPARED else "Segment"
        assert set(filters) == {"Published date", chosen}, title
        (target,) = filters[chosen]["targets"]  # the bundle's dataset uuid became Superset's dataset id
        assert datasets[target["datasetId"]] == ("run_history" if title == COMPARED else "current_segment_profiles"
                                                 if title == "Customer segments" else "current_segment_profiles (rfm)")
        for item in filters.values():  # scopes name the imported charts of this dashboard
            assert set(item["chartsInScope"]) | set(item["scope"]["excluded"]) == placed[title], title


def test_every_imported_dashboard_renders_every_chart(superset_command, browser, two_segmentations,  # noqa: F811
                                                     tmp_path):
    _skip_without_tcp(two_segmentations)
    instance = Throwaway(superset_command, tmp_path, two_segmentations)
    boards = dict(instance.metadata("select id, dashboard_title from dashboards"))
    server = subprocess.Popen([str(superset_command), "run", "-h", "127.0.0.1", "-p", str(instance.port),
                               "--with-threads"], env=instance.env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pages = {}
    try:
        _wait_until_up(f"http://127.0.0.1:{instance.port}/health")
        for board_id, title in boards.items():  # the page as a browser leaves it once its queries are done
            page = f"http://127.0.0.1:{instance.port}/superset/dashboard/{board_id}/?standalone=1"
            pages[title] = chromium_command(browser, tmp_path / f"chrome-{board_id}", "--window-size=1400,2600",
                                            "--virtual-time-budget=60000", "--dump-dom", page, timeout=900).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert set(pages) == set(TITLES)
    for title, dom in pages.items():
        for chart in TITLES[title]:
            assert chart in dom, f"chart {chart!r} not on the rendered dashboard {title!r}"
        for failure in FAILURES:
            assert failure not in dom, (title, failure)
        assert "Waiting on" not in dom, title  # every chart's query came back
        assert "Published date" in dom and "Segment" in dom  # the filter bar (Segment or Segmentation)
        drawn = dom.count("<canvas")  # ECharts draws on a canvas: one per chart that is not a table
        tables = {"Segment profiles", "Nights", "Nights of every segmentation"}
        assert drawn >= len(TITLES[title] - tables), (title, drawn)


def _wait_until_up(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"Superset did not answer at {url} within {seconds:.0f} s")
