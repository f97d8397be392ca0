"""A room on one fedxmpp, an occupant on another: the MUC service is reached over
server-to-server federation with nothing special (SRV records for its domain,
its own certificate, dialback)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from tests.e2e.harness import HarnessError, lines_matching, logged_in, run
from tests.e2e.s2s_dns import ZoneServer
from tests.e2e.s2s_pki import CertAuthority
from tests.e2e.s2s_world import Peer, start_peer

USERS_A = {"alice@a.test": "alice-pw"}
USERS_B = {"bob@b.test": "bob-pw"}
SERVICE = "conference.b.test"
PLUGINS = {"xep_0045": {}}
TIMEOUT = 25.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root: Path = tmp_path_factory.mktemp("muc-s2s")
    ca = CertAuthority(root / "ca")
    a = Peer("a", "127.0.0.6", ["a.test"], USERS_A, s2s={"verify_certificates": False})
    b = Peer("b", "127.0.0.7", ["b.test"], USERS_B, s2s={"verify_certificates": False},
             config={"muc": {"domain": SERVICE, "create": "anyone"}})
    zone = {
        "_xmpp-server._tcp.a.test": [["SRV", 0, 5, a.port, "xmpp-a.test"]],
        "xmpp-a.test": [["A", "127.0.0.6"]],
        "_xmpp-server._tcp.b.test": [["SRV", 0, 5, b.port, "xmpp-b.test"]],
        f"_xmpp-server._tcp.{SERVICE}": [["SRV", 0, 5, b.port, "xmpp-b.test"]],
        "xmpp-b.test": [["A", "127.0.0.7"]],
    }
    dns = ZoneServer(root / "dns", zone)
    started = []
    try:
        for peer in (a, b):
            started.append(start_peer(root, peer, ca, dns))
        yield SimpleNamespace(a=a.server, b=b.server)
    finally:
        problems = []
        for server in started:
            if server.running:
                try:
                    server.stop()
                except HarnessError as e:
                    problems.append(str(e))
            problems += lines_matching(server.log_text(), r"Traceback|Unhandled (error|Error)")
        dns.stop()
        if problems:
            raise HarnessError("federation servers logged errors:\n" + "\n".join(problems))


def test_a_remote_user_joins_and_talks_in_a_room(world: SimpleNamespace) -> None:
    """alice@a.test creates (create = "anyone") and joins a room on conference.b.test
    over s2s, bob@b.test joins it locally, and each sees the other's message."""
    room = f"fed@{SERVICE}"

    async def scenario() -> None:
        async with logged_in(world.a, "alice@a.test/x", USERS_A["alice@a.test"], plugins=PLUGINS) as alice, \
                logged_in(world.b, "bob@b.test/y", USERS_B["bob@b.test"], plugins=PLUGINS) as bob:
            presence, *_ = await alice.xmpp.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=TIMEOUT)
            assert {"110", "201"} <= {s.get("code") for s in presence.xml.iter(
                "{http://jabber.org/protocol/muc#user}status")}
            iq = alice.xmpp.make_iq_set(ito=room)
            iq.xml.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                        "<x xmlns='jabber:x:data' type='submit'/></query>"))
            await iq.send(timeout=TIMEOUT)
            await bob.xmpp.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=TIMEOUT)
            bob.xmpp.send_message(mto=room, mbody="hello from b", mtype="groupchat")
            alice.xmpp.send_message(mto=room, mbody="hello from a", mtype="groupchat")
            for client in (alice, bob):
                bodies = set()
                while bodies != {"hello from a", "hello from b"}:
                    msg = await asyncio.wait_for(client.messages.get(), TIMEOUT)
                    if msg["type"] == "groupchat" and msg["body"]:
                        bodies.add(msg["body"])

    run(scenario(), timeout=90)
