"""The systemd unit in etc/: valid for systemd, sandboxed, reloading with SIGHUP."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "etc" / "fedxmpp.service"


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_runs_twistd_in_the_foreground_sandboxed():
    """twistd -n as the fedxmpp user, SIGHUP for reload, a read-only system with
    only the data directory writable, no new privileges."""
    s = _settings()
    assert s["User"] == ["fedxmpp"] and s["Group"] == ["fedxmpp"]
    assert s["ExecStart"][0].split()[:3] == ["/usr/bin/twistd", "--nodaemon", "--pidfile="]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["ProtectSystem"] == ["strict"] and s["ReadWritePaths"] == ["/var/lib/fedxmpp"]
    assert s["NoNewPrivileges"] == ["yes"] and s["StateDirectory"] == ["fedxmpp"]
    assert s["CapabilityBoundingSet"] == [""]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_every_line(tmp_path):
    """`systemd-analyze verify` reports nothing: no unknown key, no bad value.  (The
    copy runs this virtualenv's twistd, since /usr/bin/twistd may not exist here.)"""
    twistd = Path(sys.executable).parent / "twistd"
    copy = tmp_path / "fedxmpp.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/twistd", str(twistd)))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if str(copy) in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
