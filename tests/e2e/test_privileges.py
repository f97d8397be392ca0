"""[server] user: started as root, the server binds its listeners (a port below
1024 among them), then runs as the configured user for good."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from tests.e2e.harness import RawClient, ServerProcess, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")

USER = "nobody"


def _free_low_port() -> int:
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free port below 1024 on 127.0.0.1")


def _ids(pid: int) -> tuple[list[int], list[int]]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gid = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    return [int(x) for x in uid], [int(x) for x in gid]


@pytest.fixture
def root_dir():
    # Not under pytest's tmp_path: its parents are root's, mode 0700.
    path = Path(tempfile.mkdtemp(prefix="fedxmpp-priv-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_server_binds_a_low_port_then_runs_as_the_configured_user(root_dir):
    nobody = pwd.getpwnam(USER)
    low = _free_low_port()
    srv = ServerProcess(root_dir / "srv", overrides={"server": {"user": USER}})
    srv.overrides["c2s"] = {"listen": [f"tcp:{low}:interface=127.0.0.1",
                                       f"tcp:{srv.port}:interface=127.0.0.1"]}
    srv.write_config()
    os.chmod(srv.root, 0o755)
    srv.start()
    try:
        srv.wait_log(r"Running as nobody")
        uids, gids = _ids(srv.proc.pid)
        assert uids == [nobody.pw_uid] * 4 and gids == [nobody.pw_gid] * 4, (uids, gids)
        assert "fedxmpp runs as root" not in srv.log_text()
        # The data directory and what the server wrote there as root are the user's now.
        assert srv.data_dir.stat().st_uid == nobody.pw_uid
        assert all(p.lstat().st_uid == nobody.pw_uid for p in srv.data_dir.rglob("*"))
        # It still serves on the low port, and storage is writable: a registered
        # account (written after the switch) logs in.
        srv.cli("adduser", "una@example.test", "--password-stdin", input="una-password\n")
        with RawClient(low, srv.cert_path()) as c:
            c.login("una", "una-password", "low")
            assert c.ping_server().get("type") == "result"
    finally:
        code = srv.terminate()
    assert srv.exited_cleanly(code), srv.log_tail()


def test_an_unknown_user_stops_start_up_with_one_line(root_dir):
    srv = ServerProcess(root_dir / "srv", overrides={"server": {"user": "no-such-user-fedxmpp"}})
    from tests.e2e.harness import run_twistd

    done = run_twistd(srv.config_path, srv.root)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"fedxmpp: {srv.config_path}: server.user: no such user 'no-such-user-fedxmpp'"], done.stderr
