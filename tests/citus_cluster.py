"""A Citus cluster for the tests that need one: a coordinator and two workers on 127.0.0.1.

Where it comes from, in order:
1. CITUS_TEST_URL: the coordinator of a running cluster (e.g. `cluster.sh start DIR` from
   ../shared/citus, or a managed service), a role that may create databases on every node;
2. a private cluster started here under a temporary folder (initdb, `shared_preload_libraries =
   'citus'`), when the machine's PostgreSQL has the citus extension installed;
3. otherwise the tests that need it skip, saying why (`why_not`). CI does not build Citus
   (about 10 minutes on 2 cores, half the CI budget): they skip there.

Each test gets fresh databases: one on every node, the extension created in each and the
workers registered in the coordinator's (`fresh_database`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

WORKERS = 2
USER = "postgres"


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parent.parent.name))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _libdir(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        pg_config = Path(shutil.which("pg_config") or "")
    if not pg_config.is_file():
        return None
    return Path(subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip())


def why_not() -> str | None:
    """None when a Citus cluster can be had; otherwise why not, for the skip message."""
    if os.environ.get("CITUS_TEST_URL"):
        return None
    bindir = _bindir()
    if bindir is None:
        return "Citus tests need PostgreSQL's server binaries (pg_ctl), which are not installed"
    libdir = _libdir(bindir)
    if libdir is None or not (libdir / "citus.so").is_file():
        return (f"Citus is not installed (no citus.so in {libdir or 'the PostgreSQL library folder'}): build it with"
                " ../shared/citus/build.sh or install the Citus packages, or set CITUS_TEST_URL; see docs/citus.md"
                " (CI does not build it)")
    if os.environ.get("CITUS_TESTS") != "1":
        return ("Citus is installed, but its tests run only with CITUS_TESTS=1: they start a coordinator and two"
                " workers and take several minutes, beyond CI's 20-minute budget, so CI does not run them"
                " (see docs/citus.md)")
    return None


def _free_ports(count: int) -> int:
    """A first port such that `count` consecutive ports from it are free."""
    for start in range(6500, 7500, 10):
        try:
            for port in range(start, start + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
    raise RuntimeError("no free ports between 6500 and 7500 for a Citus cluster")


def _as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["su", USER, "-s", "/bin/sh", "-c", " ".join(command)]
    subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[list[int]]:
    """Start a coordinator and WORKERS workers in a temporary folder; yield their ports
    (coordinator first); stop and delete them afterwards."""
    bindir = _bindir()
    folder = Path(tempfile.mkdtemp(prefix="segment-citus-"))
    if os.geteuid() == 0:
        shutil.chown(folder, USER)
    first = _free_ports(WORKERS + 1)
    ports = list(range(first, first + WORKERS + 1))
    started = []
    try:
        for port in ports:
            data = folder / f"node{port}"
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER])
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(f"shared_preload_libraries = 'citus'\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                           f"unix_socket_directories = '{folder}'\nmax_connections = 200\nfsync = off\n")
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "start"])
            started.append(data)
        yield ports
    finally:
        for data in started:
            with contextlib.suppress(Exception):
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


def _url(port: int, database: str, host: str = "127.0.0.1", user: str = USER) -> str:
    return f"postgresql://{user}@{host}:{port}/{database}"


def nodes_of(coordinator_url: str) -> list[tuple[str, int]]:
    """(host, port) of the coordinator and then its workers, read from its metadata."""
    with psycopg.connect(coordinator_url, autocommit=True) as connection:
        workers = connection.execute(
            "select nodename, nodeport from pg_dist_node where groupid <> 0 and noderole = 'primary' order by nodeid"
        ).fetchall()
        info = connection.info
        return [(info.host, info.port)] + [(host, int(port)) for host, port in workers]


@contextlib.contextmanager
def fresh_database(nodes: list[tuple[str, int]], user: str = USER) -> Iterator[str]:
    """A new database on every node with the citus extension, the workers registered in the
    coordinator's; yields the coordinator's URL; dropped everywhere afterwards."""
    name = f"segcitus_{uuid.uuid4().hex[:10]}"
    (coordinator_host, coordinator_port), workers = nodes[0], nodes[1:]
    for host, port in nodes:
        with psycopg.connect(_url(port, "postgres", host, user), autocommit=True) as connection:
            connection.execute("set client_min_messages = warning")
            connection.execute(f"create database {name}")  # a generated name, no data
        with psycopg.connect(_url(port, name, host, user), autocommit=True) as connection:
            connection.execute("create extension citus")
    with psycopg.connect(_url(coordinator_port, name, coordinator_host, user), autocommit=True) as connection:
        connection.execute("select citus_set_coordinator_host(%s, %s)", (coordinator_host, coordinator_port))
        for host, port in workers:
            connection.execute("select citus_add_node(%s, %s)", (host, port))
    try:
        yield _url(coordinator_port, name, coordinator_host, user)
    finally:
        for host, port in reversed(nodes):
            with contextlib.suppress(Exception), psycopg.connect(
                _url(port, "postgres", host, user), autocommit=True
            ) as connection:
                connection.execute(f"drop database if exists {name} with (force)")


#: a command Citus sends to a shard (its deparsed text names shards: customers_102008) or its own bookkeeping
SHARD_COMMAND = re.compile(r"_[0-9]{6}\b|^(EXPLAIN \(|BEGIN TRANSACTION|SELECT (lock_shard_resources|assign_distributed|worker_))")


class PlanLog:
    """Citus's distributed plan of every statement the job runs on the coordinator.

    `auto_explain` (a PostgreSQL contrib module) is preloaded for the database's sessions and
    reports each executed statement's plan as a NOTICE, which every psycopg connection opened
    inside the block hands to this log. Citus's plan shows where the work ran: `Task Count: 32`
    over the shards on the workers, or `INSERT/SELECT method: pull to coordinator`, or a
    `Distributed Subplan` whose rows pass through the coordinator.

    `with PlanLog(url) as plans:` (a superuser URL of the database, to set the module up), then
    `plans.entries`: (statement text, plan text), in the order they ran.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.entries: list[tuple[str, str]] = []
        self._connect = None

    def __enter__(self) -> PlanLog:
        with psycopg.connect(self.url, autocommit=True) as connection:
            name = connection.info.dbname
            for setting, value in (("session_preload_libraries", "auto_explain"), ("auto_explain.log_min_duration", "0"),
                                   ("auto_explain.log_level", "notice")):
                connection.execute(f"alter database {name} set {setting} = '{value}'")  # constants and a generated name
        log, connect = self, psycopg.Connection.connect
        self._connect = connect

        def connect_and_listen(*args, **kwargs):
            connection = connect(*args, **kwargs)
            connection.add_notice_handler(log._notice)
            return connection

        psycopg.connect = psycopg.Connection.connect = connect_and_listen  # SQLAlchemy calls psycopg.connect
        return self

    def __exit__(self, *exc) -> None:
        psycopg.connect = psycopg.Connection.connect = self._connect
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f"alter database {connection.info.dbname} reset session_preload_libraries")

    def _notice(self, diagnostic) -> None:
        text = diagnostic.message_primary or ""
        if "plan:" not in text:
            return
        body = text.split("plan:", 1)[1].lstrip("\n").removeprefix("Query Text: ")
        lines = body.split("\n")
        # the plan starts at its top node, the first unindented line with a cost
        first = next((at for at, line in enumerate(lines) if "(cost=" in line and not line.startswith(" ")), len(lines))
        statement = " ".join(" ".join(lines[:first]).split())
        if SHARD_COMMAND.search(statement):  # Citus's own command on a shard of the coordinator, relayed
            return
        self.entries.append((statement, "\n".join(lines[first:])))

    def pulled(self) -> list[tuple[str, str]]:
        """Statements whose rows went through the coordinator: an INSERT ... SELECT pulled there,
        or a subplan's intermediate result (the coordinator collects it, then sends it on)."""
        return [(statement, plan) for statement, plan in self.entries
                if "pull to coordinator" in plan or "Distributed Subplan" in plan]

    def on_workers(self, pattern: str) -> list[tuple[str, str]]:
        """Statements matching the regular expression `pattern` (case-insensitive) and the plan of each."""
        found = re.compile(pattern, re.IGNORECASE)
        return [(statement, plan) for statement, plan in self.entries if found.search(statement)]
