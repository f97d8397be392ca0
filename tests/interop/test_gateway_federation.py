"""Gateways on fedxmpp federating with Prosody (the Debian package): a component's
domain opens and accepts server-to-server streams under its own name and certificate.

fedxmpp serves ``fed.test`` on 127.0.0.8 with three components: biboumi as
``irc.fed.test`` (bridging to ngircd) and slixmpp components ``comp.fed.test`` —
both with certificates from the test CA — and ``comp2.fed.test``, whose certificate
fedxmpp generates (self-signed).  Prosody serves ``prosody.test`` (test CA) and
``prosody2.test`` (self-signed) on 127.0.0.7 and requires verified certificates
(``s2s_secure_auth``) from everyone but ``comp2.fed.test``, which may use dialback.
Both find each other through the test DNS server (SRV records, non-default ports).

So the verified mode is: comp.fed.test and irc.fed.test with prosody.test, SASL
EXTERNAL both ways; the dialback mode: comp2.fed.test with prosody2.test.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from tests.e2e.component_client import attached
from tests.e2e.harness import HarnessError, free_port, lines_matching, logged_in, run, wait_for
from tests.e2e.s2s_dns import ZoneServer
from tests.e2e.s2s_pki import CertAuthority
from tests.e2e.s2s_world import Peer, free_port_on, start_peer
from tests.interop.test_biboumi import Child, IrcClient, _irc_address, _listening
from tests.interop.test_prosody import PROSODY, PROSODYCTL, ProsodyProcess

pytestmark = pytest.mark.interop

BIBOUMI = shutil.which("biboumi")
NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None)
WAIT = 20.0
IRC = "irc.fed.test"
COMP = "comp.fed.test"
COMP2 = "comp2.fed.test"
SECRETS = {IRC: "biboumi-secret", COMP: "comp-secret", COMP2: "comp2-secret"}
FED_USERS = {"fiona@fed.test": "fiona-pw"}
PROSODY_USERS = {"pat@prosody.test": "pat-pw", "pia@prosody.test": "pia-pw", "pete@prosody2.test": "pete-pw"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if PROSODY is None or PROSODYCTL is None:
        pytest.skip("prosody is not installed (Debian: apt-get install prosody)")
    root = tmp_path_factory.mktemp("gateway-federation")
    ca = CertAuthority(root / "ca")
    prosody_s2s = free_port_on("127.0.0.7")
    component_port = free_port()
    fed = Peer("fed", "127.0.0.8", ["fed.test"], FED_USERS, ca_domains=["fed.test", IRC, COMP],
               s2s={"verify_certificates": False},
               config={"components": {
                   "listen": [f"tcp:{component_port}:interface=127.0.0.1"],
                   "component": [{"domain": domain, "secret": secret} for domain, secret in SECRETS.items()]}})
    zone: dict[str, list[list[Any]]] = {
        "_xmpp-server._tcp.prosody.test": [["SRV", 0, 5, prosody_s2s, "xmpp-p.test"]],
        "_xmpp-server._tcp.prosody2.test": [["SRV", 0, 5, prosody_s2s, "xmpp-p.test"]],
        "xmpp-p.test": [["A", "127.0.0.7"]],
        "xmpp-f.test": [["A", "127.0.0.8"]],
    }
    for domain in ("fed.test", IRC, COMP, COMP2):
        zone[f"_xmpp-server._tcp.{domain}"] = [["SRV", 0, 5, fed.port, "xmpp-f.test"]]
    dns = ZoneServer(root / "dns", zone)
    prosody = ProsodyProcess(root / "prosody", s2s_port=prosody_s2s, dns_port=dns.port, ca=ca, address="127.0.0.7",
                             insecure_domains=(COMP2,))
    server = None
    try:
        for user, password in PROSODY_USERS.items():
            prosody.register(user, password)
        prosody.start()
        server = start_peer(root, fed, ca, dns)
        yield SimpleNamespace(root=root, fed=server, prosody=prosody, component_port=component_port)
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


@pytest.fixture(scope="module")
def irc_gateway(world: SimpleNamespace) -> Iterator[SimpleNamespace]:
    """ngircd, and biboumi attached to fedxmpp as irc.fed.test."""
    if BIBOUMI is None or NGIRCD is None:
        pytest.skip("biboumi and ngircd are not installed (Debian: apt-get install biboumi ngircd)")
    root: Path = world.root / "irc"
    root.mkdir()
    irc_host = _irc_address()
    (root / "ngircd.motd").write_text("interop\n")
    (root / "ngircd.conf").write_text(f"""[Global]
Name = irc.interop.test
Info = fedxmpp interop
Listen = {irc_host}
Ports = 6667
MotdFile = {root / 'ngircd.motd'}
PidFile = {root / 'ngircd.pid'}
[Limits]
MaxNickLength = 30
[Options]
DNS = no
Ident = no
PAM = no
""")
    (root / "biboumi.cfg").write_text(f"""hostname={IRC}
password={SECRETS[IRC]}
xmpp_server_ip=127.0.0.1
port={world.component_port}
db_name={root / 'biboumi.sqlite'}
identd_port=0
log_level=1
realname_customization=true
policy_directory={root}
""")
    children: list[Child] = []
    try:
        ngircd = Child("ngircd", root, [NGIRCD, "--nodaemon", "--config", str(root / "ngircd.conf")])
        children.append(ngircd)
        wait_for(lambda: ngircd.alive() or _listening(irc_host, 6667), WAIT, what="ngircd listening")
        biboumi = Child("biboumi", root, [BIBOUMI, str(root / "biboumi.cfg")])
        children.append(biboumi)
        wait_for(lambda: biboumi.alive() or f"Component {IRC} connected" in world.fed.log_text(), WAIT,
                 what="biboumi attached")
        yield SimpleNamespace(irc_host=irc_host)
    finally:
        for child in reversed(children):
            child.stop()


async def next_body(queue_owner: Any, body: str, timeout: float = WAIT) -> Any:
    """The next message with *body*, skipping others (e.g. a gateway's notices)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no message {body!r} within {timeout}s; got {seen}")
        try:
            msg = await queue_owner.next_message(remaining)
        except asyncio.TimeoutError:
            continue
        if msg["body"] == body:
            return msg
        seen.append(str(msg))


def test_component_and_prosody_user_talk_with_sasl_external(world):
    """bot@comp.fed.test sends pat@prosody.test a message and it arrives (Prosody
    requires a verified certificate: comp.fed.test presents its own, and
    authenticates with SASL EXTERNAL); pat's reply reaches the component over
    Prosody's stream to comp.fed.test, authenticated the same way."""
    fed, prosody = world.fed, world.prosody

    async def scenario():
        async with logged_in(prosody, "pat@prosody.test/p", PROSODY_USERS["pat@prosody.test"]) as pat, \
                attached(world.component_port, COMP, SECRETS[COMP]) as comp:
            comp.xmpp.send_message(mto="pat@prosody.test/p", mfrom=f"bot@{COMP}/b", mbody="from the gateway",
                                   mtype="chat")
            msg = await next_body(pat, "from the gateway")
            assert msg["from"].full == f"bot@{COMP}/b"
            pat.xmpp.send_message(mto=f"bot@{COMP}/b", mbody="back to the gateway", mtype="chat")
            msg = await next_body(comp, "back to the gateway")
            assert msg["from"].full == "pat@prosody.test/p"

    run(scenario(), timeout=90)
    fed.wait_log(rf"S2S {COMP} -> prosody\.test: authenticated with SASL EXTERNAL")
    fed.wait_log(rf"S2S prosody\.test -> {COMP}: incoming stream authenticated with SASL EXTERNAL")
    prosody.wait_log(rf"Accepting SASL EXTERNAL identity from {COMP}")


def test_component_with_untrusted_certificate_uses_dialback(world):
    """comp2.fed.test has a self-signed certificate, which Prosody accepts from
    it only with dialback: a message goes out to pete@prosody2.test and his reply
    comes back, each direction authenticated with dialback (Prosody calling back
    fedxmpp to verify comp2.fed.test's key, and fedxmpp calling back Prosody)."""
    fed, prosody = world.fed, world.prosody

    async def scenario():
        async with logged_in(prosody, "pete@prosody2.test/p", PROSODY_USERS["pete@prosody2.test"]) as pete, \
                attached(world.component_port, COMP2, SECRETS[COMP2]) as comp2:
            comp2.xmpp.send_message(mto="pete@prosody2.test/p", mfrom=f"bot@{COMP2}/b", mbody="dialback out")
            await next_body(pete, "dialback out")
            pete.xmpp.send_message(mto=f"bot@{COMP2}/b", mbody="dialback in")
            await next_body(comp2, "dialback in")

    run(scenario(), timeout=90)
    fed.wait_log(rf"S2S {COMP2} -> prosody2\.test: authenticated with dialback")
    fed.wait_log(rf"S2S prosody2\.test -> {COMP2}: incoming stream authenticated with dialback")
    prosody.wait_log(rf"Incoming s2s connection {COMP2}->prosody2\.test complete")


def test_prosody_user_joins_irc_channel_through_biboumi(world, irc_gateway):
    """pia@prosody.test joins #chan on ngircd through fedxmpp's biboumi
    (``#chan%HOST@irc.fed.test``) over federation: an IRC client in #chan sees her
    join and her message, and she receives the IRC client's message from the room."""
    host = irc_gateway.irc_host
    room = f"#chan%{host}@{IRC}"
    irc = IrcClient(host, 6667, "watcher")
    try:
        irc.send("JOIN #chan")
        irc.expect(lambda line: " 366 watcher #chan " in line)

        async def scenario():
            async with logged_in(world.prosody, "pia@prosody.test/p", PROSODY_USERS["pia@prosody.test"]) as pia:
                pia.xmpp.register_plugin("xep_0045")
                pia.xmpp.send_presence()
                muc = pia.xmpp.plugin["xep_0045"]
                await muc.join_muc_wait(room, "pia", maxstanzas=0, timeout=WAIT)
                await asyncio.to_thread(irc.expect, lambda line: line.startswith(":pia!") and " JOIN " in line)

                pia.xmpp.send_message(mto=room, mbody="hello from prosody", mtype="groupchat")
                line = await asyncio.to_thread(irc.expect, lambda l: " PRIVMSG #chan :" in l)
                assert line.startswith(":pia!") and line.endswith("PRIVMSG #chan :hello from prosody"), line

                irc.send("PRIVMSG #chan :hello from irc")
                while True:
                    msg = await pia.next_message(timeout=WAIT)
                    if msg["type"] == "groupchat" and msg["body"] == "hello from irc":
                        break
                assert msg["from"].bare.lower() == room.lower() and msg["from"].resource == "watcher"

        run(scenario(), timeout=120)
    finally:
        irc.close()
    world.fed.wait_log(rf"S2S {IRC} -> prosody\.test: authenticated with SASL EXTERNAL")
    world.fed.wait_log(rf"S2S prosody\.test -> {IRC}: incoming stream authenticated with SASL EXTERNAL")
