"""A real PostgreSQL server for the tests: Debian's `postgresql` package, started on loopback on a
free port in a temporary folder, and stopped at the end of the session.

`initdb` and `postgres` refuse to run as root, so when the tests run as root the server runs as
the unprivileged user `nobody` (its folder is handed to that user). Connections over TCP need a
password (scram-sha-256): the superuser's is `PASSWORD`, given to libpq through `PGPASSWORD`,
never in a URL. Each test gets a database of its own (`fresh_database`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from waiting import stop

SUPERUSER = "press"
PASSWORD = "pg-secret-" + uuid.uuid4().hex[:12]  # a test asserts it never shows up in output


def pg_bin(name: str) -> str | None:
    """The newest installed PostgreSQL's `name` binary (Debian keeps them off PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return found[-1] if found else shutil.which(name)


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("postgres") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running server: connect as `SUPERUSER` on 127.0.0.1:`port` with `PGPASSWORD`."""

    port: int
    folder: Path

    def url(self, dbname: str = "postgres") -> str:
        """A URL without a password (the password comes from `PGPASSWORD`, as libpq reads it)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser (CREATE DATABASE cannot run inside a transaction)."""
        import psycopg

        with psycopg.connect(self.url(), password=PASSWORD, autocommit=True) as conn:
            conn.execute(sql)

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new empty database for one test; yields its URL, drops it afterwards."""
        name = "t_" + uuid.uuid4().hex[:16]
        self.admin(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _as_owner() -> dict[str, object]:
    """subprocess arguments that run a command as `nobody` when we are root (else as ourselves)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@contextmanager
def running_server(*, fsync: bool = False) -> Iterator[Server]:
    """Start a server in a temporary folder and stop it afterwards. `fsync` off by default: the
    tests kill clients, never the server, so its own durability is not what they check."""
    folder = Path(tempfile.mkdtemp(prefix="review-press-pg-"))
    os.chmod(folder, 0o755)
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    owner = _as_owner()
    if owner:
        os.chown(folder, owner["user"], owner["group"])  # type: ignore[arg-type]
        os.chown(sockets, owner["user"], owner["group"])  # type: ignore[arg-type]
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        os.chown(pwfile, owner["user"], owner["group"])  # type: ignore[arg-type]
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C", "LC_ALL": "C"}
    subprocess.run(
        [
            pg_bin("initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        cwd=folder,
        env=env,
        **owner,  # type: ignore[arg-type]
    )
    pwfile.unlink()
    port = _free_port()
    settings = ["-c", f"fsync={'on' if fsync else 'off'}", "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
    proc = subprocess.Popen(
        [pg_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sockets), *settings],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "server.log", "wb"),  # noqa: SIM115 - the server's log, kept for a failing test
        cwd=folder,
        env=env,
        **owner,  # type: ignore[arg-type]
    )
    server = Server(port, folder)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.admin("SELECT 1")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start: " + (folder / "server.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.1)
        yield server
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
