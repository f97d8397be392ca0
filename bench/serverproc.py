"""The fedxmpp server under test: a ``twistd -n fedxmpp`` subprocess with a temporary config.

Everything lives in one temporary directory (config, data_dir with the SQLite
database and the generated certificate, twistd log and pid file) that is removed
afterwards unless ``keep`` is set.  Accounts are provisioned with the project's
own ``fedxmpp import-users``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOMAIN = "bench.test"
READY_LINE = "fedxmpp serving"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(Exception):
    pass


class BenchServer:
    def __init__(self, venv_bin: Path, *, scram_iterations: int = 4096, keep: bool = False,
                 profile: Path | None = None, storage_url: str | None = None) -> None:
        self.bin = venv_bin
        self.keep = keep
        self.profile = profile
        self.dir = Path(tempfile.mkdtemp(prefix="fedxmpp-bench-"))
        self.data_dir = self.dir / "data"
        self.config = self.dir / "bench.toml"
        self.log = self.dir / "twistd.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._stderr = open(self.dir / "twistd.stderr", "wb")
        self.config.write_text(f"""\
# Written by bench/run.py for one benchmark run.
[server]
domains = ["{DOMAIN}"]
data_dir = "{self.data_dir}"

[auth]
scram_iterations = {scram_iterations}
max_attempts = 3

[c2s]
listen = ["tcp:{self.port}:interface=127.0.0.1"]
direct_tls = []
auth_timeout = 120.0
idle_timeout = 0.0
keepalive_interval = 0.0

[s2s]
# Federation is not measured here; do not take the machine's port 5269.
listen = []

[limits]
max_stanza_size = 262144
max_depth = 64
max_send_buffer = 33554432
""")
        if storage_url is not None:
            with open(self.config, "a") as f:
                f.write(f'\n[storage]\nurl = "{storage_url}"\n')

    @property
    def cert_file(self) -> Path:
        return self.data_dir / "certs" / f"{DOMAIN}.crt"

    # -- accounts -------------------------------------------------------------------------

    def provision(self, users: list[tuple[str, str]], timeout: float = 300.0) -> float:
        """Create the accounts with ``fedxmpp import-users``; returns the seconds it took."""
        listing = self.dir / "users.txt"
        listing.write_text("".join(f"{u}@{DOMAIN},{p}\n" for u, p in users))
        t = time.perf_counter()
        r = subprocess.run([str(self.bin / "fedxmpp"), "--config", str(self.config), "import-users", str(listing)],
                           capture_output=True, timeout=timeout)
        took = time.perf_counter() - t
        if r.returncode != 0:
            raise ServerError(f"fedxmpp import-users exited {r.returncode}: "
                              f"{(r.stderr or r.stdout).decode(errors='replace').strip()[-2000:]}")
        return took

    # -- process ----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> float:
        """Start twistd and wait for the TCP port and the log line; returns the seconds it took."""
        cmd = [str(self.bin / "twistd"), "-n", "--logfile", str(self.log), "--pidfile", str(self.dir / "twistd.pid")]
        if self.profile is not None:
            # twistd's own cProfile run; the stats are written when the server stops.
            cmd += [f"--profile={self.profile}", "--profiler=cprofile", "--savestats"]
        cmd += ["fedxmpp", "--config", str(self.config)]
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=self.dir)
        deadline = t + timeout
        port_open = logged = False
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"twistd exited with {self.proc.returncode} during start-up\n{self.tail()}")
            if not port_open:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        port_open = True
                except OSError:
                    pass
            if not logged and self.log.exists():
                logged = READY_LINE in self.log.read_text(errors="replace")
            if port_open and logged:
                return time.perf_counter() - t
            time.sleep(0.05)
        raise ServerError(f"server not ready after {timeout:.0f}s (port open: {port_open}, "
                          f"'{READY_LINE}' logged: {logged})\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> tuple[str, float]:
        """SIGTERM, bounded wait, then SIGKILL.  Returns (how it ended, seconds)."""
        if self.proc is None or self.proc.poll() is not None:
            return ("not running", 0.0)
        t = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            # twistd re-raises the signal after a clean shutdown: -15 is the normal status.
            clean = "Server Shut Down." in self.log.read_text(errors="replace") if self.log.exists() else False
            how = f"SIGTERM (status {self.proc.returncode}, {'clean shutdown logged' if clean else 'NO clean shutdown in log'})"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            how = "SIGKILL (SIGTERM timed out)"
        return (how, time.perf_counter() - t)

    def cleanup(self) -> None:
        self._stderr.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        out = []
        for f in (self.dir / "twistd.stderr", self.log):
            if f.exists():
                text = f.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    out.append(f"--- {f.name} ---\n" + "\n".join(text))
        return "\n".join(out)

    # -- measurements -----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise ServerError("no VmRSS")

    def threads(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def venv_bin() -> Path:
    return Path(sys.executable).parent
