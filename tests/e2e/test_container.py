"""The container's entrypoint (etc/container/entrypoint.sh), run here as the
Containerfile runs it (an image cannot be built on this machine: no registry to
pull the Debian Python base image from)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fedxmpp import config
from tests.e2e.harness import TWISTD, RawClient, ServerProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "etc" / "container" / "entrypoint.sh"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDXMPP_")}
    # twistd and fedxmpp from this virtualenv, as the image has them on PATH.
    env["PATH"] = f"{TWISTD.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=60,
                          env=_env(**env))


def test_the_containerfile_runs_the_entrypoint_as_an_unprivileged_user():
    text = (ROOT / "Containerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM docker.io/library/python:3.11-slim-bookworm")
    assert "USER fedxmpp" in lines and "VOLUME /var/lib/fedxmpp" in lines
    assert lines[-1] == 'ENTRYPOINT ["/usr/local/bin/fedxmpp-entrypoint"]'
    assert "etc/container/entrypoint.sh /usr/local/bin/fedxmpp-entrypoint" in text
    assert os.access(ENTRYPOINT, os.X_OK)


def test_serve_runs_twistd_in_the_foreground_with_the_mounted_config(tmp_path):
    """No arguments: the server runs (the entrypoint's process becomes twistd)
    on FEDXMPP_CONFIG, and a client logs in; admin commands reach that server."""
    srv = ServerProcess(tmp_path / "srv")
    log = open(tmp_path / "entrypoint.log", "wb")
    proc = subprocess.Popen(["sh", str(ENTRYPOINT)], cwd=srv.root, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=_env(FEDXMPP_CONFIG=str(srv.config_path)))
    log.close()
    try:
        wait_for(lambda: "fedxmpp serving" in (tmp_path / "entrypoint.log").read_text(errors="replace"), 60,
                 what="the server to start")
        # exec: the shell became twistd.
        assert "twistd" in Path(f"/proc/{proc.pid}/cmdline").read_text(errors="replace")
        added = subprocess.run(["sh", str(ENTRYPOINT), "adduser", "cora@example.test", "--password-stdin"],
                               input="cora-password\n", capture_output=True, text=True, timeout=60,
                               env=_env(FEDXMPP_CONFIG=str(srv.config_path)))
        assert added.returncode == 0, added.stderr
        with RawClient(srv.port, srv.cert_path()) as c:
            c.login("cora", "cora-password", "container")
            status = _run("status", FEDXMPP_CONFIG=str(srv.config_path))
            assert status.returncode == 0 and "c2s sessions: 1 bound" in status.stdout, status
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)
    # twistd re-raises the SIGTERM it handled, after a complete shutdown.
    assert code in (0, -15) and "Server Shut Down." in (tmp_path / "entrypoint.log").read_text(), code


def test_without_a_config_one_is_written_from_the_environment_and_kept(tmp_path):
    data = tmp_path / "data"
    done = _run("status", FEDXMPP_CONFIG=str(tmp_path / "absent.toml"), FEDXMPP_DATA_DIR=str(data),
                FEDXMPP_DOMAINS="example.org,chat.example.org", FEDXMPP_ADMINS="root@example.org")
    # The server is not running: status says so, after loading the written config.
    assert done.returncode != 0 and "not running" in done.stderr.lower(), done
    written = data / "fedxmpp.toml"
    cfg = config.load(written)
    assert cfg.server.domains == ("example.org", "chat.example.org")
    assert cfg.server.admins == ("root@example.org",) and cfg.server.data_dir == data
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    # Kept: later starts do not rewrite it, whatever the environment says.
    _run("status", FEDXMPP_CONFIG=str(tmp_path / "absent.toml"), FEDXMPP_DATA_DIR=str(data),
         FEDXMPP_DOMAINS="other.example")
    assert config.load(written).server.domains == ("example.org", "chat.example.org")


def test_missing_or_unsafe_settings_stop_with_one_line(tmp_path):
    absent = str(tmp_path / "absent.toml")
    done = _run(FEDXMPP_CONFIG=absent, FEDXMPP_DATA_DIR=str(tmp_path / "d1"))
    assert done.returncode == 64
    assert done.stderr.strip().splitlines() == [
        f"fedxmpp-entrypoint: no configuration at {absent}: mount one there, or set FEDXMPP_DOMAINS "
        "(e.g. example.org)"]
    done = _run(FEDXMPP_CONFIG=absent, FEDXMPP_DATA_DIR=str(tmp_path / "d2"),
                FEDXMPP_DOMAINS='example.org"]\nadmins = ["evil@x')
    assert done.returncode == 64 and "is not a domain or bare JID" in done.stderr, done
    assert not (tmp_path / "d2" / "fedxmpp.toml").exists()
