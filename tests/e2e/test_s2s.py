"""Federation between real fedxmpp processes (issue 5).

The world, shared by the module:

* a test DNS server (twisted.names, in a subprocess) whose SRV records name
  non-default ports, so that a server ignoring SRV would fail; ``a.test`` even has
  an A record pointing at an address where nothing listens on 5269;
* server A, ``a.test`` on 127.0.0.2: a certificate from the test CA that is
  *server-auth only* (Let's Encrypt's kind since 2026), verification on;
* server B, ``b.test``, ``b2.test`` and ``b3.test`` on 127.0.0.3: test-CA
  certificates, a direct TLS listener (XEP-0368, preferred by the SRV records of
  ``b.test``), a listener on the default port 5269 (of 127.0.0.3, or of another
  loopback address when a concurrent run holds it) for ``b2.test``/``b3.test``,
  which have an A record and no SRV; verification relaxed (dialback allowed);
  the component (gateway) domain ``gw.b.test``, with a test-CA certificate too;
* server C, ``c.test`` on 127.0.0.5: a self-signed certificate, verification
  relaxed.

So A and B authenticate each other with SASL EXTERNAL, B and C with dialback, and
A refuses C both ways.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from tests.e2e.component_client import attached
from tests.e2e.harness import (
    STREAMS, TLS_NS, HarnessError, free_port, lines_matching, logged_in, run, to_text,
)
from tests.e2e.im import Presences, befriend, manual_subscriptions
from tests.e2e.s2s_dns import ZoneServer
from tests.e2e.s2s_pki import CertAuthority
from tests.e2e.s2s_world import DB, Peer, ServerRawClient, address_with_free_5269, port_free, start_peer

USERS_A = {"alice@a.test": "alice-pw", "amy@a.test": "amy-pw", "ann@a.test": "ann-pw", "abe@a.test": "abe-pw",
           "pam@a.test": "pam-pw"}
USERS_B = {"bob@b.test": "bob-pw", "bea@b.test": "bea-pw", "carol@b2.test": "carol-pw", "ben@b3.test": "ben-pw",
           "bill@b.test": "bill-pw"}
USERS_C = {"dave@c.test": "dave-pw", "dora@c.test": "dora-pw"}
PASSWORDS = {**USERS_A, **USERS_B, **USERS_C}
GATEWAY_B = "gw.b.test"
GATEWAY_SECRET = "gateway-secret"


def pw(jid: str) -> str:
    return PASSWORDS[jid.split("/", 1)[0]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root: Path = tmp_path_factory.mktemp("s2s")
    default_port_host = address_with_free_5269("127.0.0.3")
    ca = CertAuthority(root / "ca")
    a = Peer("a", "127.0.0.2", ["a.test"], USERS_A, ca_domains=["a.test"], server_auth_only=True)
    component_port = free_port()
    b = Peer("b", "127.0.0.3", ["b.test", "b2.test", "b3.test"], USERS_B,
             ca_domains=["b.test", "b2.test", "b3.test", GATEWAY_B],
             s2s={"verify_certificates": False}, extra_listen=[f"tcp:5269:interface={default_port_host}"],
             config={"components": {"listen": [f"tcp:{component_port}:interface=127.0.0.1"],
                                    "component": [{"domain": GATEWAY_B, "secret": GATEWAY_SECRET}]}})
    b.direct_port = b.port + 1 if port_free("127.0.0.3", b.port + 1) else b.port + 2
    c = Peer("c", "127.0.0.5", ["c.test"], USERS_C, s2s={"verify_certificates": False})
    zone = {
        "_xmpp-server._tcp.a.test": [["SRV", 0, 5, a.port, "xmpp-a.test"]],
        "xmpp-a.test": [["A", "127.0.0.2"]],
        "a.test": [["A", "127.0.0.2"]],  # nothing listens on 127.0.0.2:5269
        "_xmpps-server._tcp.b.test": [["SRV", 0, 5, b.direct_port, "xmpp-b.test"]],
        "_xmpp-server._tcp.b.test": [["SRV", 10, 5, b.port, "xmpp-b.test"]],
        "xmpp-b.test": [["A", "127.0.0.3"]],
        f"_xmpp-server._tcp.{GATEWAY_B}": [["SRV", 0, 5, b.port, "xmpp-b.test"]],
        "b2.test": [["A", default_port_host]],
        "b3.test": [["A", default_port_host]],
        "_xmpp-server._tcp.c.test": [["SRV", 0, 0, c.port, "xmpp-c.test"]],
        "xmpp-c.test": [["A", "127.0.0.5"]],
        "_xmpp-server._tcp.noservice.test": [["SRV", 0, 0, 0, "."]],
        "noservice.test": [["A", "127.0.0.2"]],
    }
    dns = ZoneServer(root / "dns", zone)
    started = []
    try:
        for peer in (a, b, c):
            started.append(start_peer(root, peer, ca, dns))
        yield SimpleNamespace(a=a.server, b=b.server, c=c.server, ca=ca, dns=dns, peers={"a": a, "b": b, "c": c},
                              component_port=component_port)
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


async def expect_message(client: Any, body: str, timeout: float = 15.0) -> Any:
    """The next message with *body*; messages with other bodies are an error."""
    msg = await client.next_message(timeout)
    assert msg["body"] == body, f"expected {body!r}, got {msg}"
    return msg


async def expect_error(client: Any, timeout: float = 25.0) -> Any:
    msg = await client.next_message(timeout)
    assert msg["type"] == "error", f"expected an error, got {msg}"
    return msg


async def nothing_arrives(client: Any, seconds: float = 1.0) -> None:
    try:
        msg = await asyncio.wait_for(client.messages.get(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"{client.jid} should have received nothing, got {msg}")


def log_has(server: Any, pattern: str, timeout: float = 10.0) -> str:
    return server.wait_log(pattern, timeout)


# -- verified TLS and SASL EXTERNAL ------------------------------------------------------------------


def test_messages_both_ways_with_sasl_external(world):
    """alice@a.test and bob@b.test exchange messages both ways.  Found through SRV
    records on non-default ports (A prefers b.test's _xmpps-server record: direct
    TLS), each side verifies the other's test-CA certificate — A's being
    server-auth only — and authenticates with SASL EXTERNAL, in both directions."""
    async def scenario():
        async with logged_in(world.a, "alice@a.test/x", pw("alice@a.test")) as alice, \
                logged_in(world.b, "bob@b.test/y", pw("bob@b.test")) as bob:
            alice.xmpp.send_message(mto="bob@b.test/y", mbody="hello from a", mtype="chat")
            msg = await expect_message(bob, "hello from a")
            assert msg["from"].full == "alice@a.test/x" and msg["to"].full == "bob@b.test/y"
            bob.xmpp.send_message(mto="alice@a.test/x", mbody="hello from b", mtype="chat")
            msg = await expect_message(alice, "hello from b")
            assert msg["from"].full == "bob@b.test/y"

    run(scenario())
    log_has(world.a, r"S2S a\.test -> b\.test: authenticated with SASL EXTERNAL over direct TLS")
    log_has(world.b, r"S2S a\.test -> b\.test: incoming stream authenticated with SASL EXTERNAL")
    log_has(world.b, r"S2S b\.test -> a\.test: authenticated with SASL EXTERNAL over STARTTLS")
    log_has(world.a, r"S2S b\.test -> a\.test: incoming stream authenticated with SASL EXTERNAL")
    assert not lines_matching(world.a.log_text(), r"connected to (a|b)\.test:5269")


def test_gateway_domain_federates_with_its_own_certificate(world):
    """A component on B (gw.b.test) and alice@a.test exchange messages: A, which
    requires verified certificates, accepts the stream from gw.b.test because it
    presents gw.b.test's own certificate (SASL EXTERNAL), and alice's reply goes
    over A's stream to gw.b.test, which B answers with that certificate too."""
    async def scenario():
        async with logged_in(world.a, "alice@a.test/gw", pw("alice@a.test")) as alice, \
                attached(world.component_port, GATEWAY_B, GATEWAY_SECRET) as gateway:
            gateway.xmpp.send_message(mto="alice@a.test/gw", mfrom=f"bot@{GATEWAY_B}/b", mbody="from the gateway")
            msg = await expect_message(alice, "from the gateway", timeout=25.0)
            assert msg["from"].full == f"bot@{GATEWAY_B}/b"
            alice.xmpp.send_message(mto=f"bot@{GATEWAY_B}/b", mbody="to the gateway")
            msg = await expect_message(gateway, "to the gateway", timeout=25.0)
            assert msg["from"].full == "alice@a.test/gw"

    run(scenario())
    log_has(world.b, rf"S2S {GATEWAY_B} -> a\.test: authenticated with SASL EXTERNAL")
    log_has(world.a, rf"S2S {GATEWAY_B} -> a\.test: incoming stream authenticated with SASL EXTERNAL")
    log_has(world.a, rf"S2S a\.test -> {GATEWAY_B}: authenticated with SASL EXTERNAL")


def test_messages_sent_during_setup_arrive_in_order(world):
    """Thirty messages sent at once to a domain A has no connection to yet
    (b2.test) wait in the queue while the connection is set up, and all arrive, in
    the order they were sent."""
    assert not lines_matching(world.a.log_text(), r"a\.test -> b2\.test"), "b2.test must be a fresh destination"
    bodies = [f"queued {i:02d}" for i in range(30)]

    async def scenario():
        async with logged_in(world.a, "amy@a.test/x", pw("amy@a.test")) as amy, \
                logged_in(world.b, "carol@b2.test/y", pw("carol@b2.test")) as carol:
            for body in bodies:
                amy.xmpp.send_message(mto="carol@b2.test/y", mbody=body, mtype="chat")
            got = [(await carol.next_message(15.0))["body"] for _ in bodies]
            assert got == bodies

    run(scenario())


def test_domain_without_srv_is_reached_on_5269(world):
    """b3.test has an A record and no SRV records: A connects to that address on
    the default port 5269 (where B listens too), and the message arrives."""
    async def scenario():
        async with logged_in(world.a, "ann@a.test/x", pw("ann@a.test")) as ann, \
                logged_in(world.b, "ben@b3.test/y", pw("ben@b3.test")) as ben:
            ann.xmpp.send_message(mto="ben@b3.test/y", mbody="via the A record")
            await expect_message(ben, "via the A record")

    run(scenario())
    log_has(world.a, r"S2S a\.test -> b3\.test: connected to b3\.test:5269")


def test_presence_both_ways(world):
    """Directed presence crosses in both directions; then a subscription made
    across servers (RFC 6121 §3) carries presence broadcasts: bea's new status
    reaches abe on the other server."""
    async def scenario():
        async with logged_in(world.a, "abe@a.test/x", pw("abe@a.test")) as abe, \
                logged_in(world.b, "bea@b.test/y", pw("bea@b.test")) as bea:
            manual_subscriptions(abe, bea)
            pa, pb = Presences(abe), Presences(bea)
            abe.xmpp.send_presence(pto="bea@b.test/y", pstatus="directed to b")
            p = await pb.expect("abe@a.test/x")
            assert p["status"] == "directed to b"
            bea.xmpp.send_presence(pto="abe@a.test/x", pstatus="directed to a")
            p = await pa.expect("bea@b.test/y")
            assert p["status"] == "directed to a"
            await abe.available()
            await bea.available()
            await befriend(abe, pa, bea, pb)
            bea.xmpp.send_presence(pshow="away", pstatus="broadcast")
            p = await pa.expect("bea@b.test/y", "away")
            assert p["status"] == "broadcast"

    run(scenario())


# -- dialback ----------------------------------------------------------------------------------------


def test_dialback_with_verification_relaxed(world):
    """c.test has a self-signed certificate; B and C both relax verification, so
    they authenticate each other with dialback (each checking the other's key
    with the authoritative server over a connection of its own), and messages
    pass both ways."""
    async def scenario():
        async with logged_in(world.c, "dave@c.test/x", pw("dave@c.test")) as dave, \
                logged_in(world.b, "bill@b.test/y", pw("bill@b.test")) as bill:
            dave.xmpp.send_message(mto="bill@b.test/y", mbody="dialback from c")
            await expect_message(bill, "dialback from c")
            bill.xmpp.send_message(mto="dave@c.test/x", mbody="dialback from b")
            await expect_message(dave, "dialback from b")

    run(scenario())
    log_has(world.c, r"S2S c\.test -> b\.test: authenticated with dialback")
    log_has(world.b, r"S2S c\.test -> b\.test: incoming stream authenticated with dialback")
    log_has(world.b, r"S2S b\.test -> c\.test: authenticated with dialback")
    log_has(world.c, r"S2S b\.test -> c\.test: incoming stream authenticated with dialback")


def test_forged_dialback_delivers_nothing(world):
    """A raw socket claims to be a.test towards B (who allows dialback) with a
    dialback key a.test never made, and sends a message right behind the claim.
    The domain is not verified, so B closes the stream with a stream error, and
    the message is never delivered to bob."""
    b = world.peers["b"]

    async def scenario():
        async with logged_in(world.b, "bob@b.test/forged", pw("bob@b.test")) as bob:
            def forge() -> list[ET.Element]:
                with ServerRawClient(b.port, world.ca.path, host="127.0.0.3", domain="b.test",
                                     claim="a.test") as raw:
                    features = raw.open()
                    assert features.find(f"{{{TLS_NS}}}starttls") is not None, to_text(features)
                    raw.starttls()
                    raw.send(f"<db:result from='a.test' to='b.test'>{'ab' * 32}</db:result>"
                             f"<message from='alice@a.test/evil' to='bob@b.test/forged'><body>forged</body>"
                             f"</message>")
                    got = raw.read_until_closed(15.0, until_eof=False)
                    return got.elements

            elements = await asyncio.to_thread(forge)
            results = [e.get("type") for e in elements if e.tag == f"{{{DB}}}result"]
            assert "valid" not in results, [to_text(e) for e in elements]
            assert any(e.tag == f"{{{STREAMS}}}error" for e in elements), [to_text(e) for e in elements]
            await bob.barrier()
            await nothing_arrives(bob, 1.0)

    run(scenario())


def test_forged_dialback_key_is_invalid(world):
    """The forger waits for B's verdict: B asks a.test's authoritative server (A)
    over a db:verify connection of its own, A says the key is not its own, and B
    answers the db:result with type='invalid' and closes the stream."""
    b = world.peers["b"]

    def forge() -> list[ET.Element]:
        with ServerRawClient(b.port, world.ca.path, host="127.0.0.3", domain="b.test", claim="a.test") as raw:
            raw.open()
            raw.starttls()
            raw.send(f"<db:result from='a.test' to='b.test'>{'cd' * 32}</db:result>")
            return raw.read_until_closed(15.0, until_eof=False).elements

    elements = run(asyncio.to_thread(forge))
    results = [e.get("type") for e in elements if e.tag == f"{{{DB}}}result"]
    assert results == ["invalid"], [to_text(e) for e in elements]
    assert elements[-1].tag == f"{{{STREAMS}}}error", [to_text(e) for e in elements]
    log_has(world.a, r"b\.test asked about a dialback key for a\.test that is not ours")


# -- refusals and bounces ------------------------------------------------------------------------------


def test_bad_certificate_refused_when_verification_is_on(world):
    """A verifies certificates and c.test's is self-signed: a message from A to
    c.test bounces (<remote-server-not-found/>) and never arrives; and C's dialback
    towards A is refused, so dave's message to A's user comes back as an error and
    is not delivered either."""
    async def scenario():
        async with logged_in(world.a, "alice@a.test/bad", pw("alice@a.test")) as alice, \
                logged_in(world.c, "dora@c.test/x", pw("dora@c.test")) as dora:
            alice.xmpp.send_message(mto="dora@c.test/x", mbody="should not arrive")
            err = await expect_error(alice)
            assert err["error"]["condition"] == "remote-server-not-found", err
            dora.xmpp.send_message(mto="alice@a.test/bad", mbody="should not arrive either")
            err = await expect_error(dora)
            assert err["error"]["condition"] in ("remote-server-not-found", "remote-server-timeout"), err
            await nothing_arrives(dora, 0.5)
            await nothing_arrives(alice, 0.5)

    run(scenario())
    log_has(world.a, r"the certificate of c\.test does not verify")
    log_has(world.a, r"refused dialback for c\.test -> a\.test")


def test_unresolvable_domains_bounce_remote_server_not_found(world):
    """A domain with no DNS records at all, and one whose SRV record says "." (no
    service), each bounce <remote-server-not-found/> to the sender, promptly."""
    async def scenario():
        async with logged_in(world.a, "alice@a.test/nx", pw("alice@a.test")) as alice:
            for domain in ("nowhere.test", "noservice.test"):
                started = time.monotonic()
                alice.xmpp.send_message(mto=f"someone@{domain}", mbody="anyone?")
                err = await expect_error(alice, 10.0)
                assert err["error"]["condition"] == "remote-server-not-found", err
                assert err["from"].bare == f"someone@{domain}"
                assert time.monotonic() - started < 10.0

    run(scenario())
    log_has(world.a, r"noservice\.test says it offers no server-to-server service")


# -- the operator's check -------------------------------------------------------------------------------


def test_fedxmpp_check_reports_what_a_peer_sees(world):
    """`fedxmpp check b.test` (with A's configuration: the test CA, the test DNS)
    lists both SRV records, the target's address, the certificate's name and
    expiry, and says it verifies (exit 0); for c.test it shows the self-signed
    certificate does not verify (exit 1)."""
    done = world.a.cli("check", "b.test", "--nameserver", world.dns.address)
    out = done.stdout
    b = world.peers["b"]
    assert f"SRV _xmpps-server._tcp.b.test: priority 0 weight 5 port {b.direct_port} target xmpp-b.test" in out, out
    assert f"SRV _xmpp-server._tcp.b.test: priority 10 weight 5 port {b.port} target xmpp-b.test" in out, out
    assert f"target 1: xmpp-b.test:{b.direct_port} (direct TLS)" in out, out
    assert "addresses: 127.0.0.3" in out and "certificate names: b.test" in out, out
    assert "expires: " in out and "chain: verifies" in out and "name: covers b.test" in out, out
    assert "result: b.test is reachable with a certificate that verifies" in out, out

    bad = world.a.cli("check", "c.test", "--nameserver", world.dns.address, check=False)
    assert bad.returncode == 1, bad
    assert "chain: does NOT verify: self-signed certificate" in bad.stdout, bad.stdout
    assert "result: c.test FAILS verification" in bad.stdout, bad.stdout


# -- last, as it stops C -------------------------------------------------------------------------------


def test_shutdown_closes_federation_streams_with_system_shutdown(world):
    """Stopping C closes its federation streams with <system-shutdown/>, which B
    sees on the stream it opened to C; C exits cleanly."""
    async def scenario():
        async with logged_in(world.b, "bill@b.test/z", pw("bill@b.test")) as bill, \
                logged_in(world.c, "dave@c.test/z", pw("dave@c.test")) as dave:
            bill.xmpp.send_message(mto="dave@c.test/z", mbody="before shutdown")
            await expect_message(dave, "before shutdown")

    run(scenario())
    world.c.stop()
    log_has(world.b, r"S2S b\.test -> c\.test: the peer sent the stream error system-shutdown")


def test_jingle_signalling_across_federation_arrives_untouched(world):
    """A Jingle call between amy@a.test and bea@b.test: session-initiate (RTP with
    ICE candidates), session-accept and session-terminate cross the s2s link in
    both directions exactly as sent, and each result comes back from the peer's
    full JID (XEP-0166 signalling needs nothing of the servers but routing)."""
    import xml.etree.ElementTree as ET

    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    from tests.e2e.test_jingle import CALL_OFFER, JINGLE, canonical

    offer = CALL_OFFER.replace("romy@example.test/desk", "amy@a.test/x")
    accept = offer.replace("session-initiate", "session-accept").replace(
        "initiator='amy@a.test/x'", "initiator='amy@a.test/x' responder='bea@b.test/y'")
    terminate = f"<jingle xmlns='{JINGLE}' action='session-terminate' sid='call1'><reason><success/></reason></jingle>"

    async def scenario():
        async with logged_in(world.a, "amy@a.test/x", pw("amy@a.test")) as amy, \
                logged_in(world.b, "bea@b.test/y", pw("bea@b.test")) as bea:
            inbox: dict[str, asyncio.Queue] = {"amy": asyncio.Queue(), "bea": asyncio.Queue()}
            for name, client in (("amy", amy), ("bea", bea)):
                def handle(iq, name=name):
                    inbox[name].put_nowait(iq)
                    iq.reply(clear=True).send()
                client.xmpp.register_handler(Callback(f"jingle-{name}", MatchXPath(
                    f"{{jabber:client}}iq/{{{JINGLE}}}jingle"), handle))

            async def exchange(sender: Any, receiver: str, to: str, payload: str) -> None:
                iq = sender.xmpp.make_iq_set(ito=to)
                sent = ET.fromstring(payload)
                iq.xml.append(sent)
                result = await iq.send(timeout=20)
                assert result["type"] == "result" and result["from"].full == to
                got = await asyncio.wait_for(inbox[receiver].get(), 20)
                assert got["from"].full == sender.jid.full
                (received,) = list(got.xml)
                assert canonical(received) == canonical(sent)

            await exchange(amy, "bea", "bea@b.test/y", offer)
            await exchange(bea, "amy", "amy@a.test/x", accept)
            await exchange(amy, "bea", "bea@b.test/y", terminate)

    run(scenario())


def test_push_notifications_reach_an_app_server_across_federation(world):
    """pam@a.test registers the gateway of server B (gw.b.test) as her XEP-0357 app
    server and leaves; bob@b.test's message to her (over s2s, B to A) is stored on
    A, whose notification goes back over s2s to B and its component; the
    component's <item-not-found/> answer crosses back to A, which disables the
    registration; pam still gets the message at login."""
    from tests.e2e.test_push import app_server, enable_push

    async def scenario():
        async with logged_in(world.a, "pam@a.test/phone", pw("pam@a.test")) as pam:
            await enable_push(pam, "pam-node", form="", app=GATEWAY_B)
        async with app_server(world.component_port, GATEWAY_B, GATEWAY_SECRET) as app, \
                logged_in(world.b, "bob@b.test/push", pw("bob@b.test")) as bob:
            bob.xmpp.send_message(mto="pam@a.test", mbody="across", mtype="chat")
            n = await app.next(timeout=30)
            assert (n.sender, n.node) == ("pam@a.test", "pam-node")
            assert n.summary["message-count"] == "1"
            assert n.summary["last-message-sender"] == "bob@b.test/push"
            app.answer(n, ("cancel", "item-not-found"))
            log_has(world.a, r"Push for pam@a\.test to gw\.b\.test refused \(item-not-found\)")
        async with logged_in(world.a, "pam@a.test/phone", pw("pam@a.test")) as pam:
            pam.xmpp.send_presence()
            assert (await pam.next_message())["body"] == "across"

    run(scenario(), timeout=90)
