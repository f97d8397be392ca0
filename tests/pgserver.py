"""A PostgreSQL server of the tests' own: ``initdb`` in a temporary directory, started
with ``pg_ctl`` on a free loopback port, stopped by its PID.

PostgreSQL refuses to run as root: as root the server runs as the unprivileged
``postgres`` user (which Debian's ``postgresql`` package creates), and owns its
directory; as anyone else it runs as that user.  Its superuser is ``fedxmpp``
with a password (SCRAM over TCP, so that the tests see authentication fail),
and fsync is off: a crash of the test machine may lose the test's data, nothing else.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BINDIR = Path(os.environ.get("FEDXMPP_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "fedxmpp"
PASSWORD = "pg-test-secret-7f3a"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be run here (not installed, or no user to run it as)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    root: Path
    port: int
    pid: int
    user: str | None  # the user it runs as, when the tests run as root

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str, *, password: str | None = PASSWORD, user: str = SUPERUSER) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run *sql* as the superuser; its output."""
        done = subprocess.run(
            [str(BINDIR / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PGPASSWORD": PASSWORD})
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server's processes, those that exited included."""
        total = 0.0
        for pid in self.server_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if pid == self.pid:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime: children reaped
        return total / os.sysconf("SC_CLK_TCK")

    def server_pids(self) -> list[int]:
        """The PIDs of the server's processes (the postmaster and its children)."""
        pids = [self.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == self.pid:
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), then SIGKILL after a bounded wait; remove the directory."""
        try:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours (pg_ctl's child is not ours, so this is rare) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run PostgreSQL as") from None
    return "postgres"


def start(*, durable: bool = False) -> PostgresServer:
    """Create, start and return a server; :class:`PostgresUnavailable` if it cannot run here.

    Not *durable* (tests): fsync off.  *durable* (bench/): fsync on, and commits
    return before their WAL is flushed (synchronous_commit off), which is what
    SQLite gives fedxmpp (WAL, synchronous=NORMAL): safe from a crash of the
    server process, not from one of the machine.
    """
    if not (BINDIR / "initdb").exists():
        raise PostgresUnavailable(f"no PostgreSQL at {BINDIR} (apt-get install postgresql)")
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="fedxmpp-pg-"))
    as_user: dict[str, object] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(root)}
    data, sockdir, pwfile = root / "data", root / "sock", root / "pwfile"

    def run(*cmd: str, timeout: float = START_TIMEOUT) -> None:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, **as_user)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}")

    try:
        run("mkdir", "-m", "0700", str(sockdir))
        run("sh", "-c", f"umask 077; printf '%s\\n' '{PASSWORD}' > {pwfile}")
        run(str(BINDIR / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions")
        for _ in range(5):
            port = _free_port()
            options = (f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c synchronous_commit=off"
                       " -c max_connections=200")
            if not durable:
                options += " -c fsync=off -c full_page_writes=off"
            try:
                run(str(BINDIR / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                    "-t", str(int(START_TIMEOUT)), "-o", options, "start")
            except RuntimeError:
                if "could not bind" in (root / "server.log").read_text(errors="replace"):
                    continue  # the port was taken meanwhile
                raise
            pid = int((data / "postmaster.pid").read_text().split()[0])
            return PostgresServer(root, port, pid, user)
        raise RuntimeError("no free port for PostgreSQL after 5 tries")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
