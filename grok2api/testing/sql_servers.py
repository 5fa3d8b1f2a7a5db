"""Real PostgreSQL and MariaDB servers for tests, on throwaway data folders.

:func:`running_postgres` and :func:`running_mariadb` start a server from the
Debian packages' binaries on a free ``127.0.0.1`` port, create a database and
a user with a password, wait until it accepts that login, and stop it and
delete its folder afterwards. :meth:`SqlServer.restart` (or :meth:`stop` then
:meth:`start`) keeps the data folder and port, for outage tests.

A missing binary raises :class:`SqlServerMissing` naming the package to
install; the tests that need a server then fail rather than skip.

When running as root, PostgreSQL runs as the ``postgres`` user (it refuses
root) and MariaDB with ``--user=root``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "SqlServer",
    "SqlServerMissing",
    "running_mariadb",
    "running_postgres",
]

_PG_BIN = Path("/usr/lib/postgresql")
_MARIADBD = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
_MARIADB_INSTALL = ("/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db")
_START_TIMEOUT = 60.0

USER = "grok2api"
PASSWORD = "test-password-0123"
DATABASE = "grok2api"


class SqlServerMissing(RuntimeError):
    """The server binary is not installed."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(_PG_BIN.glob(f"*/bin/{name}"), reverse=True)
    path = str(found[0]) if found else shutil.which(name)
    if not path:
        raise SqlServerMissing(
            f"PostgreSQL's {name} is not installed; install the Debian package "
            "'postgresql' (apt-get install postgresql)."
        )
    return path


def _mariadb_bin(candidates: tuple[str, ...]) -> str:
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise SqlServerMissing(
        f"MariaDB's {Path(candidates[0]).name} is not installed; install the "
        "Debian package 'mariadb-server' (apt-get install mariadb-server)."
    )


@attrs.define
class SqlServer:
    """A running test server and how to reach it."""

    kind: str  # "postgresql" or "mariadb"
    port: int
    folder: Path
    log_path: Path
    _start_cmd: list[str] = attrs.field(repr=False)
    _stop_cmd: list[str] | None = attrs.field(default=None, repr=False)
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, repr=False)
    user: str = USER
    password: str = attrs.field(default=PASSWORD, repr=False)
    database: str = DATABASE
    host: str = "127.0.0.1"

    def url(self, database: str | None = None, scheme: str | None = None) -> str:
        """A storage URL for ``database`` (default: the one created)."""
        scheme = scheme or ("postgresql" if self.kind == "postgresql" else "mysql")
        name = database or self.database
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{name}"

    def start(self) -> None:
        """Start the server on its folder and port; returns once it accepts
        the test login."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._start_cmd, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut off)."""
        if self._stop_cmd is not None:
            subprocess.run(self._stop_cmd, capture_output=True, timeout=60, check=False)
        if self._process is not None:
            if self._process.poll() is None and self._stop_cmd is None:
                self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """Create an empty database (dropping one of that name); returns its URL."""
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(
                self._admin_conninfo(), autocommit=True, connect_timeout=10
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        else:
            with (
                contextlib.closing(self._mysql_connect()) as conn,
                conn.cursor() as cur,
            ):
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cur.execute(f"CREATE DATABASE `{name}`")
        return self.url(name)

    def _admin_conninfo(self) -> str:
        return (
            f"host={self.host} port={self.port} user=postgres "
            f"password={self.password} dbname=postgres"
        )

    def _mysql_connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            connect_timeout=2,
            autocommit=True,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            code = None if self._process is None else self._process.poll()
            # pg_ctl exits 0 once it has started the server; that is no death.
            if code is not None and (self._stop_cmd is None or code != 0):
                raise RuntimeError(
                    f"{self.kind} exited at start-up:\n{self._log_tail()}"
                )
            try:
                self._probe()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.kind} did not accept logins within "
                        f"{_START_TIMEOUT} s ({exc}):\n{self._log_tail()}"
                    ) from exc
            time.sleep(0.05)

    def _probe(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            psycopg.connect(
                f"host={self.host} port={self.port} user={self.user} "
                f"password={self.password} dbname={self.database}",
                connect_timeout=2,
            ).close()
        else:
            self._mysql_connect(self.database).close()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.getuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def running_postgres() -> Iterator[SqlServer]:
    """A PostgreSQL server with database and user ``grok2api``."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="grok2api-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    pwfile = folder / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (folder, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    server: SqlServer | None = None
    try:
        subprocess.run(
            _as_postgres(
                [
                    initdb,
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--no-sync",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={sockets} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        log = folder / "postgres.log"
        log.touch()
        if os.getuid() == 0:
            os.chown(log, owner.pw_uid, owner.pw_gid)
        server = SqlServer(
            kind="postgresql",
            port=port,
            folder=folder,
            log_path=log,
            start_cmd=_as_postgres(
                [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
            ),
            stop_cmd=_as_postgres(
                [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]
            ),
            database="postgres",
            user="postgres",
        )
        server.start()
        import psycopg

        with psycopg.connect(server._admin_conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        server.user, server.database = USER, DATABASE
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running_mariadb() -> Iterator[SqlServer]:
    """A MariaDB server with database ``grok2api`` and a user of that name
    (password login, allowed to create databases)."""
    mariadbd = _mariadb_bin(_MARIADBD)
    install = _mariadb_bin(_MARIADB_INSTALL)
    folder = Path(tempfile.mkdtemp(prefix="grok2api-mariadb-"))
    data = folder / "data"
    port = _free_port()
    as_root = ["--user=root"] if os.getuid() == 0 else []
    server: SqlServer | None = None
    try:
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *as_root,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        init = folder / "init.sql"
        # Runs at every start; IF NOT EXISTS keeps restarts harmless.
        init.write_text(
            f"CREATE DATABASE IF NOT EXISTS {DATABASE};\n"
            f"CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%';\n"
        )
        server = SqlServer(
            kind="mariadb",
            port=port,
            folder=folder,
            log_path=folder / "mariadb.log",
            start_cmd=[
                mariadbd,
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={folder / 'mariadb.sock'}",
                f"--pid-file={folder / 'mariadb.pid'}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--init-file={init}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=300",
                *as_root,
            ],
        )
        server.start()
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
