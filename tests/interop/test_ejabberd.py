"""Federation with ejabberd (the Debian package), both ways, in both modes.

The world, shared by the module:

* ejabberd on 127.0.0.9 (tests/interop/ejabberd.py: its own config, spool, log and
  Erlang node, no epmd) serves ``ejb.test``, with a certificate from the test CA
  and no dialback, so it authenticates peers only with SASL EXTERNAL over
  certificates that verify; and ``ejb2.test``, self-signed, with dialback;
* fedxmpp "fed" on 127.0.0.7 serves ``fed.test`` (test CA) and ``fed2.test``
  (self-signed), with verification relaxed so that it accepts dialback;
* fedxmpp "strict" on 127.0.0.8 serves ``fedv.test`` (test CA) and verifies
  certificates;
* the test DNS server (tests/e2e/s2s_dns.py), which both fedxmpp and ejabberd
  (through Erlang's resolver, ``ERL_INETRC``) use: every server is found through
  an SRV record naming a non-default port, and ``down.test``'s names a port where
  nothing listens.

So fed.test and ejb.test authenticate each other with SASL EXTERNAL, fed2.test
and ejb2.test with dialback, and fedv.test and ejb2.test refuse each other.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from tests.e2e.harness import (
    STREAMS, TLS_NS, HarnessError, StreamClosed, lines_matching, logged_in, run, stanza_error, to_text,
)
from tests.e2e.im import Presences, befriend, iq_error, manual_subscriptions
from tests.e2e.s2s_dns import ZoneServer
from tests.e2e.s2s_pki import CertAuthority, self_signed
from tests.e2e.s2s_world import DB, Peer, ServerRawClient, free_port_on, start_peer
from tests.interop.ejabberd import EjabberdProcess, ejabberd_installed

pytestmark = pytest.mark.interop

WAIT = 20.0
EJB_ADDRESS = "127.0.0.9"
FED_USERS = {"fiona@fed.test": "fiona-pw", "fred@fed.test": "fred-pw", "flo@fed.test": "flo-pw",
             "gus@fed2.test": "gus-pw", "gwen@fed2.test": "gwen-pw", "gil@fed2.test": "gil-pw"}
STRICT_USERS = {"vera@fedv.test": "vera-pw"}
EJB_USERS = {"ed@ejb.test": "ed-pw", "ema@ejb.test": "ema-pw", "eric@ejb.test": "eric-pw",
             "eli@ejb2.test": "eli-pw", "eve@ejb2.test": "eve-pw", "esa@ejb2.test": "esa-pw"}
PASSWORDS = {**FED_USERS, **STRICT_USERS, **EJB_USERS}

# Per mode: fedxmpp's domain, ejabberd's, and what fedxmpp logs when it authenticates.
MODES = {
    "sasl-external": SimpleNamespace(fed="fed.test", ejb="ejb.test", how="SASL EXTERNAL"),
    "dialback": SimpleNamespace(fed="fed2.test", ejb="ejb2.test", how="dialback"),
}
# One pair of accounts per (test, mode), so that no test sees another's rosters.
PAIRS = {
    ("messages", "sasl-external"): ("fiona@fed.test", "ed@ejb.test"),
    ("messages", "dialback"): ("gus@fed2.test", "eli@ejb2.test"),
    ("presence", "sasl-external"): ("fred@fed.test", "ema@ejb.test"),
    ("presence", "dialback"): ("gwen@fed2.test", "eve@ejb2.test"),
    ("iq", "sasl-external"): ("flo@fed.test", "eric@ejb.test"),
    ("iq", "dialback"): ("gil@fed2.test", "esa@ejb2.test"),
}


def pw(jid: str) -> str:
    return PASSWORDS[jid.split("/", 1)[0]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if not ejabberd_installed():
        pytest.skip("ejabberd is not installed (Debian: apt-get install ejabberd)")
    root: Path = tmp_path_factory.mktemp("ejabberd-interop")
    ca = CertAuthority(root / "ca")
    fed = Peer("fed", "127.0.0.7", ["fed.test", "fed2.test"], FED_USERS, ca_domains=["fed.test"],
               s2s={"verify_certificates": False})
    strict = Peer("strict", "127.0.0.8", ["fedv.test"], STRICT_USERS, ca_domains=["fedv.test"])
    ejb_s2s = free_port_on(EJB_ADDRESS)
    down_port = free_port_on(EJB_ADDRESS)  # nothing will listen there
    zone = {
        "_xmpp-server._tcp.ejb.test": [["SRV", 0, 5, ejb_s2s, "xmpp-e.test"]],
        "_xmpp-server._tcp.ejb2.test": [["SRV", 0, 5, ejb_s2s, "xmpp-e.test"]],
        "xmpp-e.test": [["A", EJB_ADDRESS]],
        # ejabberd resolves SRV targets with the system's resolver, not the test DNS
        # (tests/interop/ejabberd.py): the targets it follows are address literals.
        "_xmpp-server._tcp.fed.test": [["SRV", 0, 5, fed.port, fed.address]],
        "_xmpp-server._tcp.fed2.test": [["SRV", 0, 5, fed.port, fed.address]],
        "_xmpp-server._tcp.fedv.test": [["SRV", 0, 5, strict.port, strict.address]],
        "_xmpp-server._tcp.down.test": [["SRV", 0, 5, down_port, "xmpp-e.test"]],
    }
    dns = ZoneServer(root / "dns", zone)
    ejb_cert, _key = ca.issue("ejb.test", root / "ejb-certs")
    ejb2_cert = self_signed("ejb2.test", root / "ejb2-certs")
    ejabberd = EjabberdProcess(root / "ejabberd", hosts=["ejb.test", "ejb2.test"],
                               certs={"ejb.test": ejb_cert, "ejb2.test": ejb2_cert}, dialback_hosts=["ejb2.test"],
                               address=EJB_ADDRESS, s2s_port=ejb_s2s, dns_port=dns.port, ca_file=ca.path)
    started = []
    try:
        ejabberd.start()
        for jid, password in EJB_USERS.items():
            ejabberd.register(jid, password)
        for peer in (fed, strict):
            started.append(start_peer(root, peer, ca, dns))
        yield SimpleNamespace(fed=fed.server, strict=strict.server, ejabberd=ejabberd, ca=ca,
                              peers={"fed": fed, "strict": strict})
    finally:
        ejabberd.stop()
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
            raise HarnessError("fedxmpp logged errors:\n" + "\n".join(problems))


def server_of(world: SimpleNamespace, jid: str) -> Any:
    domain = jid.split("@", 1)[1].split("/", 1)[0]
    if domain.startswith("ejb"):
        return world.ejabberd
    return world.strict if domain == "fedv.test" else world.fed


async def expect_body(client: Any, body: str, timeout: float = WAIT) -> Any:
    msg = await client.next_message(timeout)
    assert msg["body"] == body, f"expected {body!r}, got {msg}"
    return msg


async def expect_error(client: Any, timeout: float = 30.0) -> Any:
    msg = await client.next_message(timeout)
    assert msg["type"] == "error", f"expected an error, got {msg}"
    return msg


async def nothing_arrives(client: Any, seconds: float = 1.0) -> None:
    try:
        msg = await asyncio.wait_for(client.messages.get(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"{client.jid} should have received nothing, got {msg}")


# -- both modes, both directions ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_messages_both_ways(world, mode):
    """A fedxmpp user and an ejabberd user exchange messages both ways: with
    SASL EXTERNAL over certificates from the test CA (ejb.test accepts nothing
    else), or with dialback over self-signed certificates.  Each server finds the
    other through SRV records naming non-default ports."""
    m = MODES[mode]
    fed_jid, ejb_jid = PAIRS[("messages", mode)]

    async def scenario():
        async with logged_in(world.fed, f"{fed_jid}/f", pw(fed_jid)) as fu, \
                logged_in(world.ejabberd, f"{ejb_jid}/e", pw(ejb_jid)) as eu:
            fu.xmpp.send_message(mto=f"{ejb_jid}/e", mbody=f"hello ejabberd ({mode})", mtype="chat")
            msg = await expect_body(eu, f"hello ejabberd ({mode})")
            assert msg["from"].full == f"{fed_jid}/f"
            eu.xmpp.send_message(mto=f"{fed_jid}/f", mbody=f"hello fedxmpp ({mode})", mtype="chat")
            msg = await expect_body(fu, f"hello fedxmpp ({mode})")
            assert msg["from"].full == f"{ejb_jid}/e"

    run(scenario(), timeout=90)
    fed, ejb = m.fed.replace(".", r"\."), m.ejb.replace(".", r"\.")
    world.fed.wait_log(rf"S2S {fed} -> {ejb}: connected to xmpp-e\.test:{world.ejabberd.s2s_port}")
    world.fed.wait_log(rf"S2S {fed} -> {ejb}: authenticated with {m.how}")
    world.fed.wait_log(rf"S2S {ejb} -> {fed}: incoming stream authenticated with {m.how}")


@pytest.mark.parametrize("mode", MODES)
def test_presence_subscription_both_ways(world, mode):
    """Directed presence crosses both ways; then the two users subscribe to each
    other (RFC 6121 §3, four steps across the servers), and a new status of the
    ejabberd user reaches the fedxmpp user, and back."""
    fed_jid, ejb_jid = PAIRS[("presence", mode)]

    async def scenario():
        async with logged_in(world.fed, f"{fed_jid}/f", pw(fed_jid)) as fu, \
                logged_in(world.ejabberd, f"{ejb_jid}/e", pw(ejb_jid)) as eu:
            manual_subscriptions(fu, eu)
            pf, pe = Presences(fu), Presences(eu)
            await asyncio.wait_for(eu.xmpp.get_roster(), WAIT)
            await asyncio.wait_for(fu.xmpp.get_roster(), WAIT)
            fu.xmpp.send_presence(pto=f"{ejb_jid}/e", pstatus="to ejabberd")
            p = await pe.expect(f"{fed_jid}/f", timeout=WAIT)
            assert p["status"] == "to ejabberd"
            eu.xmpp.send_presence(pto=f"{fed_jid}/f", pstatus="to fedxmpp")
            p = await pf.expect(f"{ejb_jid}/e", timeout=WAIT)
            assert p["status"] == "to fedxmpp"
            await fu.available()
            eu.xmpp.send_presence()
            await befriend(fu, pf, eu, pe)
            eu.xmpp.send_presence(pshow="dnd", pstatus="busy at ejabberd")
            p = await pf.expect(f"{ejb_jid}/e", "dnd", timeout=WAIT)
            assert p["status"] == "busy at ejabberd"
            fu.xmpp.send_presence(pshow="away", pstatus="away at fedxmpp")
            p = await pe.expect(f"{fed_jid}/f", "away", timeout=WAIT)
            assert p["status"] == "away at fedxmpp"

    run(scenario(), timeout=120)


@pytest.mark.parametrize("mode", MODES)
def test_iq_errors_are_routed_back(world, mode):
    """An iq to an account that does not exist on the other server, and one to an
    offline resource of an account that does, each come back to the sender as a
    <service-unavailable/> error from the addressee (RFC 6121 §8.5.1, §8.5.3.2.1),
    in both directions: the remote server generates it and the sender's routes it."""
    fed_jid, ejb_jid = PAIRS[("iq", mode)]
    fed_domain, ejb_domain = MODES[mode].fed, MODES[mode].ejb

    async def scenario():
        async with logged_in(world.fed, f"{fed_jid}/f", pw(fed_jid)) as fu, \
                logged_in(world.ejabberd, f"{ejb_jid}/e", pw(ejb_jid)) as eu:
            for client, to in ((fu, f"nobody@{ejb_domain}"), (fu, f"{ejb_jid}/offline"),
                               (eu, f"nobody@{fed_domain}"), (eu, f"{fed_jid}/offline")):
                reply = await iq_error(client, to, WAIT)
                assert reply["type"] == "error", reply
                assert reply["from"].full == to, reply
                assert stanza_error(reply.xml) == "service-unavailable", to_text(reply.xml)

    run(scenario(), timeout=90)


# -- federation edge cases ---------------------------------------------------------------------------


def test_peer_down_bounces_remote_server_not_found(world):
    """down.test's SRV record names a port where nothing listens: a message to it
    comes back to its sender as <remote-server-not-found/> from the addressee."""
    async def scenario():
        async with logged_in(world.fed, "fiona@fed.test/down", pw("fiona@fed.test")) as fiona:
            fiona.xmpp.send_message(mto="someone@down.test", mbody="anyone there?")
            err = await expect_error(fiona, WAIT)
            assert err["error"]["condition"] == "remote-server-not-found", err
            assert err["from"].bare == "someone@down.test"

    run(scenario(), timeout=60)


def _forge(port: int, host: str, cafile: Path, *, domain: str, claim: str) -> list[ET.Element]:
    """Claim to be *claim* towards *domain* with a dialback key *claim* never made;
    what the receiving server sent up to its verdict (and its stream error, if it
    closes the stream: XEP-0220 §2.4 lets it keep the stream open instead)."""
    with ServerRawClient(port, cafile, host=host, domain=domain, claim=claim) as raw:
        features = raw.open()
        assert features.find(f"{{{TLS_NS}}}starttls") is not None, to_text(features)
        raw.starttls()
        raw.send(f"<db:result from='{claim}' to='{domain}'>{'ef' * 32}</db:result>")
        got = []
        try:
            while not any(e.tag == f"{{{DB}}}result" for e in got):
                got.append(raw.next_element(WAIT))
            got.append(raw.next_element(1.0))
        except (StreamClosed, HarnessError):
            pass
        return got


def test_forged_dialback_to_fedxmpp_is_refused_on_ejabberds_word(world):
    """A raw socket claims to be ejb2.test towards fed2.test with a made-up
    dialback key: fedxmpp asks ejb2.test's authoritative server (ejabberd) over a
    db:verify connection of its own, ejabberd says the key is not its own, and
    fedxmpp answers type='invalid' and closes the stream."""
    fed = world.peers["fed"]
    elements = run(asyncio.to_thread(_forge, fed.port, fed.address, world.fed.cert_path("fed2.test"),
                                     domain="fed2.test", claim="ejb2.test"), timeout=60)
    results = [e.get("type") for e in elements if e.tag == f"{{{DB}}}result"]
    assert results == ["invalid"], [to_text(e) for e in elements]
    assert elements[-1].tag == f"{{{STREAMS}}}error", [to_text(e) for e in elements]


def test_forged_dialback_to_ejabberd_is_refused_on_fedxmpps_word(world):
    """The other way round: a raw socket claims to be fed2.test towards ejb2.test;
    ejabberd asks fedxmpp, the authoritative server for fed2.test, which says the
    key is not its own, so ejabberd does not accept the claim."""
    ejabberd = world.ejabberd
    elements = run(asyncio.to_thread(_forge, ejabberd.s2s_port, EJB_ADDRESS, ejabberd.cert_path("ejb2.test"),
                                     domain="ejb2.test", claim="fed2.test"), timeout=60)
    results = [e.get("type") for e in elements if e.tag == f"{{{DB}}}result"]
    assert "valid" not in results and results, [to_text(e) for e in elements]
    world.fed.wait_log(r"ejb2\.test asked about a dialback key for fed2\.test that is not ours")


def test_bad_certificate_refused_in_verified_mode(world):
    """fedv.test verifies certificates and ejb2.test's is self-signed: vera's
    message to ejb2.test bounces (<remote-server-not-found/>) and never arrives;
    ejabberd's dialback towards fedv.test is refused, so eli's message comes back
    to eli as an error.  And ejb.test, which takes only SASL EXTERNAL, refuses the
    self-signed fed2.test: gus's message to ed comes back to gus."""
    async def scenario():
        async with logged_in(world.strict, "vera@fedv.test/v", pw("vera@fedv.test")) as vera, \
                logged_in(world.ejabberd, "eli@ejb2.test/bad", pw("eli@ejb2.test")) as eli, \
                logged_in(world.fed, "gus@fed2.test/bad", pw("gus@fed2.test")) as gus, \
                logged_in(world.ejabberd, "ed@ejb.test/bad", pw("ed@ejb.test")) as ed:
            vera.xmpp.send_message(mto="eli@ejb2.test/bad", mbody="should not arrive")
            err = await expect_error(vera)
            assert err["error"]["condition"] == "remote-server-not-found", err
            eli.xmpp.send_message(mto="vera@fedv.test/v", mbody="should not arrive either")
            err = await expect_error(eli)
            assert err["error"]["condition"] in ("remote-server-not-found", "remote-server-timeout"), err
            gus.xmpp.send_message(mto="ed@ejb.test/bad", mbody="not to a verifying server")
            err = await expect_error(gus)
            assert err["error"]["condition"] in ("remote-server-not-found", "remote-server-timeout",
                                                 "not-authorized"), err
            await nothing_arrives(vera, 0.5)
            await nothing_arrives(ed, 0.5)

    run(scenario(), timeout=150)
    world.strict.wait_log(r"the certificate of ejb2\.test does not verify")
    world.strict.wait_log(r"refused dialback for ejb2\.test -> fedv\.test")
