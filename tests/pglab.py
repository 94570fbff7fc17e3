"""A throw-away PostgreSQL server on loopback for the tests (Debian's ``postgresql``: ``.ci/system-deps``).

One server per pytest-xdist worker (the ``pg_lab`` fixture, started on first use): ``initdb`` in a fresh directory
under /tmp (as the ``postgres`` user when the tests run as root: initdb refuses root), trust authentication (the
server listens on 127.0.0.1 only, inside the tests' loopback-only namespace, on a free port, and on a Unix socket
in its own directory), durability off (fsync, full-page writes, synchronous commit: nothing here outlives the run).
Each test gets a database of its own (``pg_url``); the server and its files are removed at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

SERVER_USER = "postgres"  # the OS user that runs the server when the tests run as root
SUPERUSER = "postgres"  # the database superuser initdb makes


def find_bin(name: str) -> Path | None:
    """A PostgreSQL program: on PATH, else in the newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    found = shutil.which(name)
    if found:
        return Path(found)

    def version(directory: str) -> tuple[int, ...]:
        parts = Path(directory).parent.name.split(".")
        return tuple(int(part) for part in parts) if all(part.isdigit() for part in parts) else (0,)

    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    for directory in reversed(versions):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def available() -> bool:
    if not all(find_bin(name) for name in ("initdb", "pg_ctl", "postgres")):
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PgLab:
    """A PostgreSQL server of the tests' own: :meth:`start`, :meth:`create_database`, :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.base = Path(tempfile.mkdtemp(prefix="pglab-", dir="/tmp"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._as_root = os.geteuid() == 0
        self._started = False
        self._options = ""

    # -- the server --

    def start(self, attempts: int = 3) -> PgLab:
        if self._as_root:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        os.chmod(self.base, 0o700)
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"
        )
        for attempt in range(attempts):
            self.port = free_port(self.host)  # free now; another worker may take it first: then try another
            options = (
                f"-k {self.base} -h {self.host} -p {self.port} -c fsync=off -c full_page_writes=off "
                "-c synchronous_commit=off -c max_connections=200"
            )
            self._options = options
            try:
                self._start_server()
            except subprocess.CalledProcessError:
                if attempt == attempts - 1:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
                continue
            self._started = True
            return self
        raise AssertionError("unreachable")

    def halt(self, mode: str = "fast") -> None:
        """Stop the server and keep its files (``fast``: sessions are ended, as by a service restart;
        ``immediate``: as by a crash), so that :meth:`resume` starts it again on the same port."""
        self._run("pg_ctl", "stop", "-w", "-s", "-D", str(self.data), "-m", mode)

    def resume(self) -> None:
        """Start the server :meth:`halt` stopped, with the same port, socket and settings."""
        self._start_server()

    def running(self) -> bool:
        binary = find_bin("pg_ctl")
        assert binary is not None
        command = [str(binary), "status", "-D", str(self.data)]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        return subprocess.run(command, cwd=self.base, capture_output=True, timeout=60, check=False).returncode == 0

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-s", "-D", str(self.data), "-m", "immediate")
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- databases --

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """The URL of ``database``; a ``password`` is accepted and ignored by trust authentication (tests of its
        masking use one)."""
        auth = f"{SUPERUSER}:{password}" if password else SUPERUSER
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its name."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY file_copy')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals --

    def _start_server(self) -> None:
        # The log file keeps the server's output off our pipes (a server writing to them would hold them open).
        self._run(
            "pg_ctl", "start", "-w", "-t", "30", "-s", "-D", str(self.data), "-l", str(self.log), "-o", self._options
        )

    def _run(self, program: str, *args: str) -> None:
        binary = find_bin(program)
        if binary is None:
            raise RuntimeError(f"{program} not found: run .ci/system-deps (Debian's postgresql)")
        command = [str(binary), *args]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        subprocess.run(command, check=True, cwd=self.base, capture_output=True, text=True, timeout=120)
