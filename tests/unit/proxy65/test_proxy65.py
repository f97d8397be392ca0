"""XEP-0065 proxy (fedxmpp.proxy65): SOCKS5 negotiation, pairing, activation, relaying
with flow control, limits and timeouts, on StringTransport and a fake clock."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from fedxmpp import config
from fedxmpp.config import Proxy65Config
from fedxmpp.proxy65.service import BYTESTREAMS, Proxy65, stream_hash
from fedxmpp.router import Router
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.features.world import condition, payload, xml

SETTINGS = Proxy65Config(domain="proxy.example.test", listen=("tcp:7777",), host="proxy.example.test", port=7777,
                         rate=0, max_connections=10, max_streams_per_user=2, pending_timeout=60, idle_timeout=300)
ALICE = JID.parse("alice@example.test/phone")
BOB = JID.parse("bob@example.test/laptop")


class Setup:
    def __init__(self, **changes) -> None:
        self.clock = Clock()
        self.router = Router(("example.test", "other.test"))
        self.delivered: list[domish.Element] = []
        self.router.set_local(lambda stanza, frm, to: self.delivered.append(stanza))
        self.sent_remote: list[domish.Element] = []
        self.router.set_default(lambda stanza, frm, to: self.sent_remote.append(stanza))
        self.proxy = Proxy65(dataclasses.replace(SETTINGS, **changes), self.router, self.clock)

    def iq(self, frm: JID, type: str, body: str) -> domish.Element:
        el = domish.Element((ns.CLIENT, "iq"))
        el["type"], el["id"], el["from"], el["to"] = type, "q1", frm.full(), "proxy.example.test"
        el.addChild(xml(body))
        before = len(self.delivered)
        self.router.route(el, frm, JID.parse("proxy.example.test"))
        (reply,) = self.delivered[before:]
        return reply

    def connect(self):
        conn = self.proxy.factory().buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        conn.makeConnection(transport)
        return conn, transport

    def socks(self, digest: str):
        """A connection through the SOCKS5 handshake for *digest*, the reply checked."""
        conn, t = self.connect()
        conn.dataReceived(b"\x05\x01\x00")
        assert t.value() == b"\x05\x00"
        t.clear()
        conn.dataReceived(b"\x05\x01\x00\x03\x28" + digest.encode() + b"\x00\x00")
        assert t.value() == b"\x05\x00\x00\x03\x28" + digest.encode() + b"\x00\x00"
        t.clear()
        return conn, t

    def activate(self, frm: JID, sid: str, target: JID) -> domish.Element:
        return self.iq(frm, "set", f"<query xmlns='{BYTESTREAMS}' sid='{sid}'><activate>{target.full()}</activate>"
                                   "</query>")

    def stream(self, sid: str = "s1"):
        digest = stream_hash(sid, ALICE, BOB)
        (target, tt), (initiator, it) = self.socks(digest), self.socks(digest)
        assert self.activate(ALICE, sid, BOB)["type"] == "result"
        return (initiator, it), (target, tt)


def test_stream_hash_is_sha1_of_sid_requester_target():
    import hashlib
    assert stream_hash("s", ALICE, BOB) == hashlib.sha1(b"salice@example.test/phonebob@example.test/laptop").hexdigest()


def test_disco_info_items_and_streamhost():
    """disco#info: identity proxy/bytestreams and the bytestreams feature; disco#items
    empty; the streamhost query gives the configured public host and port."""
    s = Setup()
    info = payload(s.iq(ALICE, "get", f"<query xmlns='{ns.DISCO_INFO}'/>"))
    identity = next(info.elements())
    assert (identity["category"], identity["type"]) == ("proxy", "bytestreams")
    assert BYTESTREAMS in [f["var"] for f in info.elements() if f.name == "feature"]
    assert list(payload(s.iq(ALICE, "get", f"<query xmlns='{ns.DISCO_ITEMS}'/>")).elements()) == []
    host = next(payload(s.iq(ALICE, "get", f"<query xmlns='{BYTESTREAMS}'/>")).elements())
    assert dict(host.attributes) == {"jid": "proxy.example.test", "host": "proxy.example.test", "port": "7777"}
    assert s.proxy.disco_items() == [(JID.parse("proxy.example.test"), "SOCKS5 bytestreams proxy")]


def test_only_local_users_may_use_the_proxy():
    """A remote user's streamhost query or activation: <forbidden/> (disco stays open)."""
    s = Setup()
    remote = JID.parse("mallory@remote.test/x")
    el = domish.Element((ns.CLIENT, "iq"))
    el["type"], el["id"] = "get", "r1"
    el.addElement((BYTESTREAMS, "query"))
    s.router.route(el, remote, JID.parse("proxy.example.test"))
    (reply,) = s.sent_remote
    assert condition(reply) == "forbidden"


def test_unknown_iq_and_addresses_get_service_unavailable():
    s = Setup()
    assert condition(s.iq(ALICE, "get", "<query xmlns='jabber:iq:version'/>")) == "service-unavailable"


def test_socks5_refusals():
    """No acceptable method: 05 FF and close; a non-domain address: 08; a command
    other than CONNECT: 07; a name that is no SHA-1 hex: 01; all close the connection."""
    s = Setup()
    conn, t = s.connect()
    conn.dataReceived(b"\x05\x01\x02")
    assert t.value() == b"\x05\xff" and t.disconnecting
    for request, code in ((b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 8),
                          (b"\x05\x02\x00\x03\x28" + b"a" * 40 + b"\x00\x00", 7),
                          (b"\x05\x01\x00\x03\x05hello\x00\x00", 1)):
        conn, t = s.connect()
        conn.dataReceived(b"\x05\x01\x00")
        t.clear()
        conn.dataReceived(request)
        assert t.value()[:2] == bytes((5, code)) and t.disconnecting


def test_handshake_split_across_reads():
    """A client whose messages arrive byte by byte is served the same."""
    s = Setup()
    conn, t = s.connect()
    digest = stream_hash("s", ALICE, BOB).encode()
    for byte in b"\x05\x01\x00" + b"\x05\x01\x00\x03\x28" + digest + b"\x00\x00":
        conn.dataReceived(bytes((byte,)))
    assert t.value() == b"\x05\x00" + b"\x05\x00\x00\x03\x28" + digest + b"\x00\x00"


def test_a_third_connection_for_a_stream_is_refused():
    s = Setup()
    digest = stream_hash("s", ALICE, BOB)
    s.socks(digest), s.socks(digest)
    conn, t = s.connect()
    conn.dataReceived(b"\x05\x01\x00\x05\x01\x00\x03\x28" + digest.encode() + b"\x00\x00")
    assert t.value()[2:4] == b"\x05\x02" and t.disconnecting


def test_activation_relays_both_ways():
    s = Setup()
    (initiator, it), (target, tt) = s.stream()
    initiator.dataReceived(b"file bytes")
    assert tt.value() == b"file bytes"
    target.dataReceived(b"ack")
    assert it.value() == b"ack"


def test_bytes_sent_before_activation_are_delivered_after_it():
    s = Setup()
    digest = stream_hash("s", ALICE, BOB)
    (target, tt), (initiator, it) = s.socks(digest), s.socks(digest)
    initiator.dataReceived(b"early")
    assert tt.value() == b""
    assert s.activate(ALICE, "s", BOB)["type"] == "result"
    assert tt.value() == b"early"


def test_activation_errors():
    """Unknown stream (one end only, or a hash nobody used): <item-not-found/>; by a
    third party naming the same sid and target: <item-not-found/> (its JID makes
    another hash), the stream stays unactivated; twice: <not-allowed/>; no sid or
    no target: <bad-request/>."""
    s = Setup()
    digest = stream_hash("s", ALICE, BOB)
    (target, tt) = s.socks(digest)
    assert condition(s.activate(ALICE, "s", BOB)) == "item-not-found"
    (initiator, it) = s.socks(digest)
    assert condition(s.activate(ALICE, "unknown", BOB)) == "item-not-found"
    mallory = JID.parse("mallory@example.test/x")
    assert condition(s.activate(mallory, "s", BOB)) == "item-not-found"
    initiator.dataReceived(b"x")
    assert tt.value() == b""
    assert s.activate(ALICE, "s", BOB)["type"] == "result"
    assert condition(s.activate(ALICE, "s", BOB)) == "not-allowed"
    assert condition(s.iq(ALICE, "set", f"<query xmlns='{BYTESTREAMS}'><activate>{BOB.full()}</activate></query>")) \
        == "bad-request"
    assert condition(s.iq(ALICE, "set", f"<query xmlns='{BYTESTREAMS}' sid='s'/>")) == "bad-request"


def test_flow_control_pauses_the_sender_while_the_receiver_is_full():
    """The target's transport pausing its producer stops reading the initiator, and
    resuming resumes it (Twisted's producer/consumer; nothing buffered in the proxy)."""
    s = Setup()
    (initiator, it), (target, tt) = s.stream()
    assert tt.producer is not None and tt.streaming
    tt.producer.pauseProducing()
    assert it.producerState == "paused"
    tt.producer.resumeProducing()
    assert it.producerState == "producing"


def test_rate_limit_pauses_then_resumes():
    """Past its burst, a direction is paused for as long as the rate needs."""
    s = Setup(rate=100_000)
    (initiator, it), (target, tt) = s.stream()
    initiator.dataReceived(b"x" * 50_000)
    assert it.producerState == "producing"
    initiator.dataReceived(b"x" * 100_000)
    assert it.producerState == "paused"
    s.clock.advance(0.4)  # 50,000 bytes over the burst at 100,000 bytes/s: 0.5 s
    assert it.producerState == "paused"
    s.clock.advance(0.2)
    assert it.producerState == "producing"
    assert len(tt.value()) == 150_000


def test_closing_one_end_closes_the_other_and_forgets_the_stream():
    s = Setup()
    (initiator, it), (target, tt) = s.stream()
    initiator.dataReceived(b"last bytes")
    initiator.connectionLost(None)
    assert tt.disconnecting and tt.value() == b"last bytes"
    target.connectionLost(None)
    assert not s.proxy.relays and not s.proxy.streams and not s.proxy.connections


def test_pending_and_idle_timeouts():
    s = Setup(pending_timeout=30, idle_timeout=100)
    lone, lt = s.socks(stream_hash("lone", ALICE, BOB))
    (initiator, it), (target, tt) = s.stream()
    s.clock.advance(31)
    assert lt.disconnecting and not it.disconnecting
    initiator.dataReceived(b"x")
    s.clock.advance(99)
    assert not it.disconnecting
    s.clock.advance(2)
    assert it.disconnecting and tt.disconnecting


def test_connection_and_per_user_stream_limits():
    """Past max_connections a new connection is dropped; past max_streams_per_user
    an activation gets <resource-constraint/>."""
    s = Setup(max_connections=4, max_streams_per_user=1)
    s.stream("one")
    digest = stream_hash("two", ALICE, BOB)
    s.socks(digest), s.socks(digest)
    conn, t = s.connect()
    assert t.disconnected or t.disconnecting
    assert condition(s.activate(ALICE, "two", BOB)) == "resource-constraint"


# -- configuration ----------------------------------------------------------------------


def load(tmp_path, text: str) -> config.Config:
    path = tmp_path / "fedxmpp.toml"
    path.write_text(text)
    return config.load(path)


def test_config_defaults_host_and_port_from_domain_and_listener(tmp_path):
    cfg = load(tmp_path, "[proxy65]\ndomain = 'proxy.example.test'\nlisten = ['tcp:7777:interface=127.0.0.1']\n")
    assert (cfg.proxy65.host, cfg.proxy65.port) == ("proxy.example.test", 7777)
    assert config.load(None).proxy65.domain == ""


@pytest.mark.parametrize("text,problem", [
    ("domain = 'proxy.example.test'\n", "proxy65.listen: must name"),
    ("listen = ['tcp:7777']\n", "proxy65.domain: is required"),
    ("domain = 'localhost'\nlisten = ['tcp:7777']\n", "proxy65.domain: 'localhost' is already"),
    ("domain = 'Proxy.example'\nlisten = ['tcp:7777']\n", "proxy65.domain: 'Proxy.example' must be written"),
    ("domain = 'p.example'\nlisten = ['unix:/tmp/x']\n", "proxy65.port: must be given"),
    ("domain = 'p.example'\nlisten = ['tcp:7777']\nrate = -1\n", "proxy65.rate: must be"),
    ("domain = 'p.example'\nlisten = ['tcp:7777']\nmax_connections = 1\n", "proxy65.max_connections: must be"),
    ("domain = 'p.example'\nlisten = ['tcp:7777']\nidle_timeout = 0\n", "proxy65.idle_timeout: must be"),
])
def test_config_errors_name_the_key(tmp_path, text, problem):
    with pytest.raises(config.ConfigError) as err:
        load(tmp_path, "[proxy65]\n" + text)
    assert problem in str(err.value) and "\n" not in str(err.value)
