"""The outgoing side on fakes: the bounded queue per destination, bounces, retries
with backoff, dialback from the initiating side, draining in order, idle close."""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError, TimeoutError

from fedxmpp.s2s.resolver import Target
from tests.unit.s2s.world import (
    DIALBACK_FEATURES, PEER_HEADER, bodies, outgoing, send, unresolvable, written,
)

DB_VALID = "<db:result from='remote.test' to='example.test' type='valid'/>"


def authenticate(out, resolver, stream_id="s1", index=-1):
    """Connect the pending attempt and play a remote server that accepts dialback."""
    proto, transport = resolver.complete(index)
    proto.dataReceived((PEER_HEADER.format(id=stream_id) + DIALBACK_FEATURES).encode())
    key = out.ctx.keys.key("remote.test", "example.test", stream_id)
    assert f"<db:result from='example.test' to='remote.test'>{key}</db:result>" in written(transport)
    proto.dataReceived(DB_VALID.encode())
    return proto, transport


def test_stanzas_wait_for_the_stream_and_leave_in_order(tmp_path):
    """Messages routed while the connection is being set up are queued, nothing is
    written before dialback succeeds, then all of them go out in order; later ones
    go straight out."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    for i in range(5):
        send(out, "alice@example.test/a", "bob@remote.test", f"m{i}")
    proto, transport = resolver.complete()
    proto.dataReceived((PEER_HEADER.format(id="s1") + DIALBACK_FEATURES).encode())
    assert bodies(written(transport)) == []
    proto.dataReceived(DB_VALID.encode())
    send(out, "alice@example.test/a", "bob@remote.test", "m5")
    assert bodies(written(transport)) == [f"m{i}" for i in range(6)]
    assert "xmlns='jabber:server'" in written(transport) and "jabber:client" not in written(transport)
    assert delivered.stanzas == []


def test_overflow_bounces_resource_constraint(tmp_path):
    """With queue_size 2, the third stanza waiting for the same destination comes
    back to its sender as <resource-constraint/>; the first two still go out."""
    out, resolver, delivered, clock = outgoing(tmp_path, queue_size=2)
    for i in range(3):
        send(out, "alice@example.test/a", "bob@remote.test", f"m{i}")
    assert delivered.errors() == ["resource-constraint"]
    assert delivered.stanzas[0]["to"] == "alice@example.test/a"
    proto, transport = authenticate(out, resolver)
    assert bodies(written(transport)) == ["m0", "m1"]


def test_unresolvable_domain_bounces_every_queued_stanza(tmp_path):
    """When DNS knows nothing of the domain, every queued stanza is bounced with
    <remote-server-not-found/>, addressed back to its sender, from the recipient."""
    out, resolver, delivered, clock = outgoing(tmp_path, targets=unresolvable())
    send(out, "alice@example.test/a", "bob@remote.test", "one")
    assert delivered.errors() == ["remote-server-not-found"]
    err = delivered.stanzas[0]
    assert (err["from"], err["to"]) == ("bob@remote.test", "alice@example.test/a")
    assert out.destinations["remote.test"].queue == type(out.destinations["remote.test"].queue)()


def test_every_target_is_tried_then_the_senders_hear(tmp_path):
    """A refused connection moves on to the next target; when the last one times
    out, the queued stanzas bounce with <remote-server-timeout/>."""
    out, resolver, delivered, clock = outgoing(tmp_path, targets=[Target("a.test", 1), Target("b.test", 2)])
    send(out, "alice@example.test/a", "bob@remote.test", "x")
    resolver.connects[0][2].errback(ConnectionRefusedError())
    assert [t.host for t, *_ in resolver.connects] == ["a.test", "b.test"]
    assert delivered.stanzas == []
    resolver.connects[1][2].errback(TimeoutError())
    assert delivered.errors() == ["remote-server-timeout"]


def test_next_attempt_waits_for_the_backoff(tmp_path):
    """After a failed round, a new stanza does not reconnect at once: the attempt
    starts after the backoff (1 s, then 2 s), and a success resets it."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "1")
    resolver.connects[0][2].errback(ConnectionRefusedError())
    send(out, "alice@example.test/a", "bob@remote.test", "2")
    assert len(resolver.connects) == 1
    clock.advance(1.0)
    assert len(resolver.connects) == 2
    resolver.connects[1][2].errback(ConnectionRefusedError())
    send(out, "alice@example.test/a", "bob@remote.test", "3")
    clock.advance(1.5)
    assert len(resolver.connects) == 2
    clock.advance(0.5)
    assert len(resolver.connects) == 3
    proto, transport = authenticate(out, resolver)
    assert bodies(written(transport)) == ["3"]
    assert out.destinations["remote.test"].backoff == 0


def test_stanzas_bounce_after_send_timeout(tmp_path):
    """A connection that never completes: after send_timeout the waiting stanzas
    bounce with <remote-server-timeout/>, not before."""
    out, resolver, delivered, clock = outgoing(tmp_path, send_timeout=20.0, connect_timeout=30.0)
    send(out, "alice@example.test/a", "bob@remote.test", "late")
    clock.advance(19.0)
    assert delivered.stanzas == []
    clock.advance(1.0)
    assert delivered.errors() == ["remote-server-timeout"]


def test_authentication_timeout_fails_the_stream(tmp_path):
    """A peer that connects but never authenticates us: after auth_timeout the
    stream is closed with <connection-timeout/> and the stanza bounces."""
    out, resolver, delivered, clock = outgoing(tmp_path, auth_timeout=10.0)
    send(out, "alice@example.test/a", "bob@remote.test", "x")
    proto, transport = resolver.complete()
    clock.advance(10.0)
    assert "<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)
    proto.connectionLost(None)
    assert delivered.errors() == ["remote-server-timeout"]


def test_encryption_required_but_not_offered(tmp_path):
    """With require_encryption, a peer that offers no STARTTLS gets a
    <policy-violation/> stream error, no dialback key, and the stanza bounces."""
    out, resolver, delivered, clock = outgoing(tmp_path, require_encryption=True)
    send(out, "alice@example.test/a", "bob@remote.test", "secret")
    proto, transport = resolver.complete()
    proto.dataReceived((PEER_HEADER.format(id="s1") + DIALBACK_FEATURES).encode())
    assert "<policy-violation" in written(transport) and "db:result" not in written(transport)
    proto.connectionLost(None)
    assert delivered.errors() == ["remote-server-not-found"]
    assert "secret" not in written(transport)


def test_starttls_is_taken_when_offered(tmp_path):
    """A peer offering STARTTLS is answered with <starttls/>, and nothing else is
    sent before TLS."""
    out, resolver, delivered, clock = outgoing(tmp_path, require_encryption=True)
    send(out, "alice@example.test/a", "bob@remote.test", "x")
    proto, transport = resolver.complete()
    proto.dataReceived((PEER_HEADER.format(id="s1") + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
                        "xmpp-tls'><required/></starttls></stream:features>").encode())
    assert written(transport).endswith("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")


def test_refused_dialback_bounces(tmp_path):
    """The receiving server answers our db:result with type='invalid': the stream
    is given up and the stanza bounces; with type='error' it bounces as
    <remote-server-timeout/> (XEP-0220 §2.6)."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "x")
    proto, transport = resolver.complete()
    proto.dataReceived((PEER_HEADER.format(id="s1") + DIALBACK_FEATURES).encode())
    proto.dataReceived(b"<db:result from='remote.test' to='example.test' type='invalid'/>")
    proto.connectionLost(None)
    assert delivered.errors() == ["remote-server-not-found"]
    assert bodies(written(transport)) == []

    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "y")
    proto, transport = resolver.complete()
    proto.dataReceived((PEER_HEADER.format(id="s2") + DIALBACK_FEATURES).encode())
    proto.dataReceived(b"<db:result from='remote.test' to='example.test' type='error'><error type='cancel'>"
                       b"<remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                       b"</db:result>")
    proto.connectionLost(None)
    assert delivered.errors() == ["remote-server-timeout"]


def test_another_local_domain_is_multiplexed(tmp_path):
    """A stanza from our second domain to the same remote domain rides the same
    dialback stream: a second db:result for other.test, then the stanza."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "from example")
    proto, transport = authenticate(out, resolver)
    send(out, "olga@other.test/o", "bob@remote.test", "from other")
    key = out.ctx.keys.key("remote.test", "other.test", "s1")
    assert f"<db:result from='other.test' to='remote.test'>{key}</db:result>" in written(transport)
    assert bodies(written(transport)) == ["from example"]
    proto.dataReceived(b"<db:result from='remote.test' to='other.test' type='valid'/>")
    assert bodies(written(transport)) == ["from example", "from other"]
    assert len(resolver.connects) == 1


def test_a_domain_refused_on_a_shared_stream_gets_its_own(tmp_path):
    """When the peer refuses other.test's db:result on example.test's stream, the
    stanza does not bounce yet: other.test opens a stream of its own (its own
    header, its own certificate), and the stanza leaves there.  Refused there
    too, it bounces."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "from example")
    proto, transport = authenticate(out, resolver)
    send(out, "olga@other.test/o", "bob@remote.test", "from other")
    proto.dataReceived(b"<db:result from='remote.test' to='other.test' type='invalid'/>")
    assert delivered.stanzas == []
    assert len(resolver.connects) == 2
    own, own_transport = resolver.complete()
    assert "from='other.test' to='remote.test'" in written(own_transport)
    own.dataReceived((PEER_HEADER.format(id="s2") + DIALBACK_FEATURES).encode())
    own.dataReceived(b"<db:result from='remote.test' to='other.test' type='valid'/>")
    assert bodies(written(own_transport)) == ["from other"]
    assert bodies(written(transport)) == ["from example"]

    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "from example")
    authenticate(out, resolver)
    send(out, "olga@other.test/o", "bob@remote.test", "refused twice")
    proto = out.destinations["remote.test"].streams[0]
    proto.dataReceived(b"<db:result from='remote.test' to='other.test' type='invalid'/>")
    own, own_transport = resolver.complete()
    own.dataReceived((PEER_HEADER.format(id="s3") + DIALBACK_FEATURES).encode())
    own.dataReceived(b"<db:result from='remote.test' to='other.test' type='invalid'/>")
    own.connectionLost(None)
    assert delivered.errors() == ["remote-server-not-found"]


def test_idle_stream_is_closed(tmp_path):
    """An authenticated stream without traffic for idle_timeout is closed with our
    closing tag; the next stanza opens a new connection."""
    out, resolver, delivered, clock = outgoing(tmp_path, idle_timeout=300.0)
    send(out, "alice@example.test/a", "bob@remote.test", "x")
    proto, transport = authenticate(out, resolver)
    clock.advance(299.0)
    assert not written(transport).endswith("</stream:stream>")
    clock.advance(1.0)
    assert written(transport).endswith("</stream:stream>")
    proto.connectionLost(None)
    send(out, "alice@example.test/a", "bob@remote.test", "y")
    assert len(resolver.connects) == 2


def test_verify_request_goes_to_the_authoritative_server(tmp_path):
    """The receiving side's question (is this key remote.test's?) is sent as
    db:verify on a stream to remote.test, and its answer fires the Deferred."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    answers = []
    out.verify("example.test", "remote.test", "their-stream", "k3y").addCallback(answers.append)
    proto, transport = resolver.complete()
    proto.dataReceived((PEER_HEADER.format(id="s1") + DIALBACK_FEATURES).encode())
    assert "<db:verify from='example.test' to='remote.test' id='their-stream'>k3y</db:verify>" in written(transport)
    assert answers == []
    proto.dataReceived(b"<db:verify from='remote.test' to='example.test' id='their-stream' type='invalid'/>")
    assert answers == [("invalid", None)]


def test_stanzas_from_foreign_domains_are_not_sent(tmp_path):
    """Only our own domains originate stanzas over federation: one 'from' a remote
    domain is dropped, and no connection is attempted."""
    out, resolver, delivered, clock = outgoing(tmp_path)
    from fedxmpp.xml.jid import JID
    from tests.unit.s2s.world import message
    out.route(message("eve@evil.test", "bob@remote.test", "x"), JID.parse("eve@evil.test"),
              JID.parse("bob@remote.test"))
    assert resolver.connects == [] and out.destinations == {}


def test_shutdown_sends_system_shutdown_and_stops_routing(tmp_path):
    """close_all() ends every stream with <system-shutdown/>; stanzas routed after
    it start no connection."""
    from fedxmpp.xml.errors import StreamError
    out, resolver, delivered, clock = outgoing(tmp_path)
    send(out, "alice@example.test/a", "bob@remote.test", "x")
    proto, transport = authenticate(out, resolver)
    out.close_all(StreamError("system-shutdown"))
    assert "<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)
    send(out, "alice@example.test/a", "carol@else.test", "y")
    assert len(resolver.connects) == 1


def test_a_second_domain_waiting_for_a_failed_round_hears_promptly(tmp_path):
    """A stanza from our second domain waits while the first domain's stream is
    being set up (to share it); when that round fails on DNS, it gets its own
    attempt and its own bounce at once, not after send_timeout."""
    out, resolver, delivered, clock = outgoing(tmp_path, targets=[Target("remote.test", 5269)])
    send(out, "alice@example.test/a", "bob@remote.test", "1")
    send(out, "olga@other.test/o", "bob@remote.test", "2")
    assert len(resolver.connects) == 1
    resolver.connects[0][2].errback(ConnectionRefusedError())
    assert delivered.errors() == ["remote-server-not-found"]
    clock.advance(1.0)  # the backoff before the next round
    assert len(resolver.connects) == 2
    resolver.connects[1][2].errback(ConnectionRefusedError())
    assert delivered.errors() == ["remote-server-not-found", "remote-server-not-found"]
    assert [s["to"] for s in delivered.stanzas] == ["alice@example.test/a", "olga@other.test/o"]
