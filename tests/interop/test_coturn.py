"""XEP-0215 against coturn (the Debian package): the TURN credentials fedxmpp hands
out to its users open an allocation on a coturn that shares the secret
(``use-auth-secret``), and once expired they no longer do.

coturn runs in the foreground (no daemon, no CLI, no TLS) on a free loopback port
with its own configuration and database in the test's directory, and is stopped
by PID.  ``turnutils_uclient`` (from the same package) is the TURN client: in
client-to-client mode it allocates two relays and sends between them.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, free_port, logged_in, run, wait_for
from tests.interop.test_biboumi import Child

pytestmark = pytest.mark.interop

TURNSERVER = shutil.which("turnserver")
UCLIENT = shutil.which("turnutils_uclient")
EXTDISCO = "urn:xmpp:extdisco:2"
SECRET = "coturn-interop-shared-secret"
USERS = {"tina@example.test": "tina-secret"}
LIFETIME = 10
WAIT = 20.0


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[dict]:
    if TURNSERVER is None or UCLIENT is None:
        pytest.skip("coturn is not installed (Debian: apt-get install coturn)")
    port = free_port()
    relay_base = random.randrange(50000, 60000, 100)
    (tmp_path / "turnserver.conf").write_text(f"""listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port={port}
min-port={relay_base}
max-port={relay_base + 99}
use-auth-secret
static-auth-secret={SECRET}
realm=example.test
no-cli
no-tls
no-dtls
allow-loopback-peers
userdb={tmp_path / 'turndb'}
pidfile={tmp_path / 'turnserver.pid'}
simple-log
""")
    srv = ServerProcess(tmp_path / "server", overrides={"external_services": {
        "secret": SECRET, "credential_lifetime": LIFETIME,
        "service": [{"type": "turn", "host": "127.0.0.1", "port": port, "transport": "udp"}]}})
    srv.import_users(USERS)
    coturn = Child("turnserver", tmp_path, [TURNSERVER, "-c", str(tmp_path / "turnserver.conf"),
                                            "--log-file", "stdout"])
    try:
        wait_for(lambda: coturn.alive() or "SQLite DB connection success" in coturn.text(), WAIT,
                 what="turnserver started")
        srv.start()
        yield {"server": srv, "port": port, "coturn": coturn}
    finally:
        coturn.stop()
        if srv.running:
            srv.stop()


def credentials(server: ServerProcess) -> dict[str, str]:
    """The <service/> fedxmpp lists for tina's <services/> request, as attributes."""
    async def ask():
        async with logged_in(server, "tina@example.test/call", USERS["tina@example.test"]) as tina:
            iq = tina.xmpp.make_iq_get(ito="example.test")
            iq.xml.append(ET.fromstring(f"<services xmlns='{EXTDISCO}'/>"))
            result = await iq.send(timeout=10)
            (service,) = result.xml.find(f"{{{EXTDISCO}}}services")
            return dict(service.attrib)
    return run(ask())


def allocate(port: int, username: str, password: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([UCLIENT, "-p", str(port), "-u", username, "-w", password, "-n", "1", "-m", "1",
                               "-y", "-e", "127.0.0.1", "127.0.0.1"],
                              capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"turnutils_uclient did not finish in {WAIT}s: {e.stdout!r}") from None


def test_fedxmpp_credentials_open_a_coturn_allocation_until_they_expire(turn):
    """Fresh credentials: turnutils_uclient allocates relays and exchanges packets
    (exit 0).  Credentials whose expiry has passed: coturn refuses the allocation
    (uclient reports it cannot complete the allocation)."""
    service = credentials(turn["server"])
    assert service["type"] == "turn" and service["restricted"] == "1"
    assert service["host"] == "127.0.0.1" and service["port"] == str(turn["port"])
    expiry = int(service["username"].split(":", 1)[0])
    assert service["username"] == f"{expiry}:tina@example.test"
    # Wait (bounded) until coturn's clock, the same as ours, is past the expiry.
    wait_for(lambda: time.time() > expiry + 1, LIFETIME + 5, interval=0.2, what="credentials to expire")
    expired = allocate(turn["port"], service["username"], service["password"])
    turn["coturn"].alive()
    assert expired.returncode != 0, expired.stdout[-2000:]
    assert "Cannot complete Allocation" in expired.stdout + expired.stderr

    fresh = credentials(turn["server"])
    assert int(fresh["username"].split(":", 1)[0]) > expiry
    done = allocate(turn["port"], fresh["username"], fresh["password"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    totals = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", done.stdout + done.stderr)
    assert totals and int(totals[-1][1]) > 0, done.stdout[-2000:]
