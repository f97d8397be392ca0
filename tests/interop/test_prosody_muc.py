"""Group chat across servers with Prosody (the Debian package): a Prosody user in
a room of fedxmpp's MUC service, and a fedxmpp user in a room of Prosody's
mod_muc.

fedxmpp serves ``fedm.test`` with its MUC on ``conference.fedm.test``; Prosody
serves ``prosodym.test`` with a ``muc`` component on ``conference.prosodym.test``.
Certificates are self-signed on both sides and both sides accept dialback for
these domains (Prosody's ``s2s_insecure_domains``, fedxmpp's
``verify_certificates = false``): what is tested here is group chat, not PKI.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, lines_matching, logged_in, run
from tests.e2e.s2s_dns import ZoneServer
from tests.e2e.s2s_pki import CertAuthority
from tests.e2e.s2s_world import Peer, free_port_on, start_peer
from tests.interop.test_prosody import PROSODY, PROSODYCTL, ProsodyProcess

pytestmark = pytest.mark.interop

WAIT = 30.0
FED_USERS = {"fay@fedm.test": "fay-pw"}
PROSODY_USERS = {"pam@prosodym.test": "pam-pw"}
FED_MUC = "conference.fedm.test"
PROSODY_MUC = "conference.prosodym.test"
PLUGINS = {"xep_0045": {}}


class ProsodyWithMuc(ProsodyProcess):
    """ProsodyProcess serving prosodym.test and a mod_muc component instead."""

    def __init__(self, root: Path, *, ca: CertAuthority, **kw: Any) -> None:
        super().__init__(root, ca=ca, **kw)
        old_cert, old_key = self.cert, self.cert.with_suffix(".key")
        self.cert, key = ca.issue("prosodym.test", root / "certs-m")
        text = self.config.read_text().replace(str(old_cert), str(self.cert)).replace(str(old_key), str(key))
        text = text.replace('VirtualHost "prosody.test"', 'VirtualHost "prosodym.test"')
        text = text.split('VirtualHost "prosody2.test"', 1)[0]
        text += f'Component "{PROSODY_MUC}" "muc"\n    restrict_room_creation = false\n'
        self.config.write_text(text)

    def cert_path(self, domain: str = "prosodym.test") -> Path:
        return self.cert


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if PROSODY is None or PROSODYCTL is None:
        pytest.skip("prosody is not installed (Debian: apt-get install prosody)")
    root = tmp_path_factory.mktemp("prosody-muc")
    ca = CertAuthority(root / "ca")
    prosody_s2s = free_port_on("127.0.0.8")
    fed = Peer("fedm", "127.0.0.9", ["fedm.test"], FED_USERS, s2s={"verify_certificates": False},
               config={"muc": {"domain": FED_MUC, "create": "anyone"}})
    zone = {
        "_xmpp-server._tcp.prosodym.test": [["SRV", 0, 5, prosody_s2s, "xmpp-pm.test"]],
        f"_xmpp-server._tcp.{PROSODY_MUC}": [["SRV", 0, 5, prosody_s2s, "xmpp-pm.test"]],
        "xmpp-pm.test": [["A", "127.0.0.8"]],
        "_xmpp-server._tcp.fedm.test": [["SRV", 0, 5, fed.port, "xmpp-fm.test"]],
        f"_xmpp-server._tcp.{FED_MUC}": [["SRV", 0, 5, fed.port, "xmpp-fm.test"]],
        "xmpp-fm.test": [["A", "127.0.0.9"]],
    }
    dns = ZoneServer(root / "dns", zone)
    # prosodym.test has a test-CA certificate (for its client); conference.prosodym.test
    # does not, so fedxmpp (verify_certificates = false) uses dialback with it.
    prosody = ProsodyWithMuc(root / "prosody", s2s_port=prosody_s2s, dns_port=dns.port, ca=ca, address="127.0.0.8",
                             insecure_domains=("fedm.test", FED_MUC))
    server: ServerProcess | None = None
    try:
        for user, password in PROSODY_USERS.items():
            prosody.register(user, password)
        prosody.start()
        server = start_peer(root, fed, ca, dns)
        yield SimpleNamespace(fed=server, prosody=prosody)
    finally:
        prosody.stop()
        problems = []
        if server is not None:
            if server.running:
                server.stop()
            problems = lines_matching(server.log_text(), r"Traceback|Unhandled (error|Error)")
        dns.stop()
        if problems:
            raise HarnessError("fedxmpp logged errors:\n" + "\n".join(problems))


async def _bodies(client: Any, wanted: set[str]) -> None:
    got: set[str] = set()
    while not wanted <= got:
        msg = await asyncio.wait_for(client.messages.get(), WAIT)
        if msg["type"] == "groupchat" and msg["body"]:
            got.add(msg["body"])


async def _instant(client: Any, room: str) -> None:
    iq = client.xmpp.make_iq_set(ito=room)
    iq.xml.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                "<x xmlns='jabber:x:data' type='submit'/></query>"))
    await iq.send(timeout=WAIT)


def _run(federation: SimpleNamespace, room: str, creator: str) -> None:
    fed, prosody = federation.fed, federation.prosody

    async def scenario() -> None:
        async with logged_in(fed, "fay@fedm.test/f", FED_USERS["fay@fedm.test"], plugins=PLUGINS) as fay, \
                logged_in(prosody, "pam@prosodym.test/p", PROSODY_USERS["pam@prosodym.test"],
                          plugins=PLUGINS) as pam:
            first, second = (fay, pam) if creator == "fay" else (pam, fay)
            await first.xmpp.plugin["xep_0045"].join_muc_wait(room, "First", timeout=WAIT)
            await _instant(first, room)
            await second.xmpp.plugin["xep_0045"].join_muc_wait(room, "Second", timeout=WAIT)
            first.xmpp.send_message(mto=room, mbody="from the first", mtype="groupchat")
            second.xmpp.send_message(mto=room, mbody="from the second", mtype="groupchat")
            await _bodies(first, {"from the first", "from the second"})
            await _bodies(second, {"from the first", "from the second"})

    run(scenario(), timeout=120)


def test_a_prosody_user_in_a_fedxmpp_room(federation):
    """pam@prosodym.test joins a room on conference.fedm.test over s2s (Prosody
    side: a remote MUC like any other) and both occupants see both messages."""
    _run(federation, f"here@{FED_MUC}", creator="fay")


def test_a_fedxmpp_user_in_a_prosody_room(federation):
    """fay@fedm.test joins a room of Prosody's mod_muc, created by a Prosody user,
    and both occupants see both messages."""
    _run(federation, f"there@{PROSODY_MUC}", creator="pam")
