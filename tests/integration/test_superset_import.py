"""The bundle in a real Superset: its own import accepts it and the dashboard renders every chart.

Optional (marker `superset`): it needs Superset installed in a venv of its own, found at
$SUPERSET_VENV (default /tmp/superset-venv; see docs/testing.md), and Debian's `chromium`
for the rendering. Without them it skips, saying what is missing. The Superset it starts is
a throwaway on 127.0.0.1 with its metadata in the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
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
from tests.integration.test_superset_bundle import CHART_TITLES

pytestmark = pytest.mark.superset

SUPERSET_VENV = Path(os.environ.get("SUPERSET_VENV", "/tmp/superset-venv"))
CONFIG = """
SECRET_KEY = "throwaway-test-instance-{port}"
SQLALCHEMY_DATABASE_URI = "sqlite:///{folder}/superset.db"  # Superset's own metadata, not our data
AUTH_ROLE_PUBLIC = "Admin"  # a local throwaway: the headless browser needs no login
PUBLIC_ROLE_LIKE = "Admin"
WTF_CSRF_ENABLED = False
TALISMAN_ENABLED = False
"""


@pytest.fixture
def superset_command():
    command = SUPERSET_VENV / "bin" / "superset"
    if not command.is_file():
        pytest.skip(f"Superset is not installed at {SUPERSET_VENV} (set SUPERSET_VENV; see docs/testing.md)")
    return command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_superset_imports_the_bundle_and_renders_every_chart(populated, superset_command, tmp_path):  # noqa: F811
    if not populated.url.host:
        pytest.skip("the test server listens on a Unix socket only (the embedded server), and the bundle's database"
                    " entry names a TCP host: set TEST_DATABASE_URL to a server on a host and port")
    browser = chromium()
    port = _free_port()
    (tmp_path / "superset_config.py").write_text(CONFIG.format(port=port, folder=tmp_path))
    env = {**os.environ, "SUPERSET_CONFIG_PATH": str(tmp_path / "superset_config.py"), "FLASK_APP": "superset"}

    def run(*args, timeout=300):
        result = subprocess.run([str(superset_command), *args], env=env, capture_output=True, text=True,
                                timeout=timeout, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result

    run("db", "upgrade")
    run("fab", "create-admin", "--username", "admin", "--firstname", "A", "--lastname", "B",
        "--email", "admin@localhost", "--password", "admin")
    run("init")
    bundle = tmp_path / "bundle.zip"
    url = populated.url
    with populated.connect() as connection:
        superset.write_bundle(connection, url, MALL, bundle, user=url.username or "postgres")
    imported = run("import-dashboards", "-p", str(bundle), "-u", "admin")
    assert "error" not in imported.stderr.lower().replace("error_", ""), imported.stderr[-2000:]
    metadata = sa.create_engine(f"sqlite:///{tmp_path}/superset.db")  # Superset's own store, read back
    with metadata.connect() as connection:
        charts = dict(connection.execute(sa.text("select slice_name, viz_type from slices")).all())
        tables = {row[0] for row in connection.execute(sa.text("select table_name from tables"))}
        (dashboard_id,) = connection.execute(sa.text("select id from dashboards")).scalars()
        uri = connection.execute(sa.text("select sqlalchemy_uri from dbs")).scalar_one()
    metadata.dispose()
    assert set(charts) == CHART_TITLES and "sankey_v2" in charts.values()
    assert {"current_segment_profiles", "segment_transitions", "run_history"} <= tables
    if url.password:  # the placeholder is replaced as a user would, in Superset
        run("set-database-uri", "-d", superset.database_name(url), "-u",
            uri.replace(superset.PASSWORD_MASK, url.password))

    server = subprocess.Popen([str(superset_command), "run", "-h", "127.0.0.1", "-p", str(port), "--with-threads"],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health")
        page = f"http://127.0.0.1:{port}/superset/dashboard/{dashboard_id}/?standalone=1"
        shot = tmp_path / "dashboard.png"
        chromium_command(browser, tmp_path / "chrome", "--window-size=1400,1900", "--hide-scrollbars",
                         "--virtual-time-budget=40000", f"--screenshot={shot}", page)
        dom = chromium_command(browser, tmp_path / "chrome2", "--window-size=1400,1900",
                               "--virtual-time-budget=40000", "--dump-dom", page).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert shot.stat().st_size > 20_000  # a picture, not a blank page
    shutil.copy(shot, Path(os.environ.get("SUPERSET_SCREENSHOT", tmp_path / "kept.png")))
    for title in CHART_TITLES:
        assert title in dom, f"chart {title!r} not on the rendered dashboard"
    for failure in ("Sankey is a DAG", "Unexpected error", "permission denied", "does not exist",
                    "Data error", "No results were returned"):
        assert failure not in dom, failure
    assert dom.count("<canvas") + dom.count("<svg") >= 5  # the ECharts charts drew something


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
