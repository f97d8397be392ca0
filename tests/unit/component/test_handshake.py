"""XEP-0114 stream header and handshake on Twisted's fakes."""

from __future__ import annotations

import hashlib

from fedxmpp.component.handshake import handshake_digest
from fedxmpp.xml.jid import JID
from tests.unit.component.world import SECRET, World, stanza_error, stream_error
from tests.unit.fakes import stanza


def test_digest_is_hex_sha1_of_stream_id_and_secret():
    """The handshake value is lower-case hex SHA-1 over stream id + secret, UTF-8 encoded."""
    assert handshake_digest("3BF96D32", "sécret") == hashlib.sha1("3BF96D32sécret".encode()).hexdigest()
    assert handshake_digest("a", "b") != handshake_digest("b", "a")


def test_header_has_component_domain_and_id_but_no_version_or_features():
    """The server answers a XEP-0114 header (which carries no version) in
    jabber:component:accept, from the component's domain, with a fresh id, no
    version and no <stream:features/> (components never expect any)."""
    w = World()
    peer = w.connect(None)
    header = peer.open("gw.example.test")
    assert "xmlns='jabber:component:accept'" in header and "from='gw.example.test'" in header
    assert peer.stream_id and f"id='{peer.stream_id}'" in header
    assert "version=" not in header.split("?>", 1)[1]
    assert "features" not in header and not peer.closed


def test_right_secret_gets_empty_handshake_and_a_route():
    """The right digest is answered with <handshake/>; from then on the domain, and any
    address at it, routes to this stream."""
    w = World()
    peer = w.connect()
    peer.handshake(SECRET)
    assert peer.take() == "<handshake/>"
    w.route(stanza("message", "alice@example.test/a", "bot@gw.example.test"))
    [msg] = peer.elements()
    assert (msg.name, msg["to"], msg["from"]) == ("message", "bot@gw.example.test", "alice@example.test/a")


def test_upper_case_digest_is_accepted():
    """Hex is hex: a component writing the digest in upper case is let in."""
    w = World()
    peer = w.connect()
    peer.feed(f"<handshake>{handshake_digest(peer.stream_id, SECRET).upper()}</handshake>")
    assert peer.take() == "<handshake/>"


def test_wrong_secret_is_not_authorized_and_closes():
    """A wrong digest gets <not-authorized/>, the closing tag and a closed stream; the
    domain stays unavailable (a user's message to it bounces)."""
    w = World()
    alice = w.login("alice@example.test/a")
    peer = w.connect()
    peer.handshake("wrong")
    out = peer.take()
    assert stream_error(peer.elements(out)) == "not-authorized" and out.endswith("</stream:stream>")
    assert peer.closed and "gw.example.test" not in w.components.sessions
    w.route(stanza("message", "alice@example.test/a", "gw.example.test"))
    assert [stanza_error(e) for e in alice.sent] == ["service-unavailable"]


def test_second_attempt_on_the_same_stream_is_impossible():
    """One attempt per connection: after a failure nothing more is read."""
    w = World()
    peer = w.connect()
    stream_id = peer.stream_id
    peer.handshake("wrong")
    peer.take()
    peer.feed(f"<handshake>{handshake_digest(stream_id, SECRET)}</handshake>")
    assert peer.take() == "" and "gw.example.test" not in w.components.sessions


def test_unknown_domain_is_host_unknown():
    """A header naming a domain without a configured component gets <host-unknown/>,
    and so does one naming none or something that is not a domain."""
    for header_to in ("nobody.example.test", "example.test", "not a domain"):
        w = World()
        peer = w.connect(None)
        out = peer.open(header_to)
        assert stream_error(peer.elements(out)) == "host-unknown", header_to
        assert peer.closed
    w = World()
    peer = w.connect(None)
    peer.feed("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>")
    assert stream_error(peer.elements()) == "host-unknown"


def test_client_namespace_is_refused():
    """The component port speaks jabber:component:accept only: a client header gets
    <invalid-namespace/>."""
    w = World()
    peer = w.connect(None)
    peer.feed("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
              "to='gw.example.test' version='1.0'>")
    assert stream_error(peer.elements()) == "invalid-namespace"


def test_stanza_before_handshake_is_not_authorized():
    """Before the handshake nothing is routed: a stanza gets <not-authorized/>."""
    w = World()
    bob = w.login("bob@example.test/b")
    peer = w.connect()
    peer.feed("<message from='gw.example.test' to='bob@example.test/b'><body>early</body></message>")
    assert stream_error(peer.elements()) == "not-authorized"
    assert bob.sent == []


def test_handshake_timeout():
    """A component that never completes its handshake is closed with
    <connection-timeout/> after handshake_timeout seconds; one that did is not."""
    w = World(handshake_timeout=5)
    slow = w.connect()
    done = w.attach()
    w.clock.advance(4.9)
    assert not slow.closed
    w.clock.advance(0.2)
    assert stream_error(slow.elements()) == "connection-timeout" and slow.closed
    assert not done.closed


def test_disconnect_restores_the_unavailable_route():
    """When the connection is lost the domain goes back to <service-unavailable/>."""
    w = World()
    alice = w.login("alice@example.test/a")
    peer = w.attach()
    peer.stream.connectionLost(None)
    assert "gw.example.test" not in w.components.sessions
    w.route(stanza("iq", "alice@example.test/a", "gw.example.test", "get", payload_ns="urn:xmpp:ping"))
    assert [stanza_error(e) for e in alice.sent] == ["service-unavailable"]
    assert w.router.has_route("gw.example.test")
    assert JID.parse(alice.sent[0]["from"]) == JID.parse("gw.example.test")
