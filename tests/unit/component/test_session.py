"""What an authenticated component may send, and what happens to it."""

from __future__ import annotations

import pytest
from twisted.logger import globalLogPublisher

from tests.unit.component.world import World, component, stanza_error, stream_error
from tests.unit.fakes import stanza


def _send(peer, xml: str) -> None:
    peer.feed(xml)


def test_message_from_an_address_at_its_domain_reaches_the_user():
    """'from' may be the domain or any address at it; the user receives the stanza with
    that 'from', and the component gets nothing back."""
    w = World()
    alice = w.login("alice@example.test/a")
    peer = w.attach()
    for frm in ("gw.example.test", "+15551234@gw.example.test", "gw.example.test/res", "Bot@gw.example.test/r"):
        _send(peer, f"<message from='{frm}' to='alice@example.test/a'><body>hi</body></message>")
    assert [m["from"] for m in alice.sent] == [
        "gw.example.test", "+15551234@gw.example.test", "gw.example.test/res", "bot@gw.example.test/r"]
    assert peer.take() == ""


def test_missing_from_is_the_component_domain():
    """A stanza without 'from' is taken to come from the component's domain."""
    w = World()
    alice = w.login("alice@example.test/a")
    peer = w.attach()
    _send(peer, "<message to='alice@example.test/a'><body>hi</body></message>")
    assert [m["from"] for m in alice.sent] == ["gw.example.test"]


@pytest.mark.parametrize("forged", [
    "alice@example.test", "example.test", "other.example.test", "sub.gw.example.test", "x@sub.gw.example.test",
    "gw.example.test.evil", "bob@remote.test/r"])
def test_from_outside_its_domain_gets_forbidden_and_goes_nowhere(forged):
    """A 'from' outside the component's own domain (a hosted user, the server, another
    component, a subdomain, a remote address) is answered on the component's stream
    with a <forbidden/> stanza error, the stream stays open, and the addressee gets
    nothing."""
    w = World(component("gw.example.test"), component("other.example.test"))
    bob = w.login("bob@example.test/b")
    other = w.attach("other.example.test")
    peer = w.attach()
    _send(peer, f"<message from='{forged}' to='bob@example.test/b' id='m1'><body>forged</body></message>")
    [error] = peer.elements()
    assert stanza_error(error) == "forbidden" and error["to"] == forged and error["id"] == "m1"
    assert bob.sent == [] and other.take() == "" and not peer.closed


def test_forged_error_stanza_is_dropped_without_answer():
    """An error stanza with a bad 'from' is neither delivered nor answered (errors are
    never answered with errors)."""
    w = World()
    bob = w.login("bob@example.test/b")
    peer = w.attach()
    _send(peer, "<message type='error' from='alice@example.test' to='bob@example.test/b'/>")
    assert peer.take() == "" and bob.sent == []


@pytest.mark.parametrize("attrs, condition", [
    ("from='gw.example.test'", "bad-request"),
    ("from='gw.example.test' to='a@b@c'", "jid-malformed"),
    ("from='@gw.example.test' to='bob@example.test/b'", "jid-malformed"),
])
def test_bad_addresses_are_refused(attrs, condition):
    """'to' is required and must be valid, and 'from' must be valid: otherwise a stanza
    error comes back and nothing is routed."""
    w = World()
    bob = w.login("bob@example.test/b")
    peer = w.attach()
    _send(peer, f"<message {attrs}><body>x</body></message>")
    [error] = peer.elements()
    assert stanza_error(error) == condition and bob.sent == []


def test_malformed_iq_is_bad_request():
    """An iq request needs an id, a valid type and exactly one payload."""
    w = World()
    w.login("bob@example.test/b")
    peer = w.attach()
    for iq in ("<iq type='get' from='gw.example.test' to='bob@example.test/b'><ping xmlns='urn:xmpp:ping'/></iq>",
               "<iq type='get' id='1' from='gw.example.test' to='bob@example.test/b'/>",
               "<iq type='nope' id='2' from='gw.example.test' to='bob@example.test/b'/>"):
        _send(peer, iq)
        [error] = peer.elements()
        assert stanza_error(error) == "bad-request", iq


def test_iq_to_the_server_is_answered():
    """The component reaches the server's own services: an iq nobody handles at the
    hosted domain is answered with <service-unavailable/>, addressed to the component."""
    w = World()
    peer = w.attach()
    _send(peer, "<iq type='get' id='q1' from='gw.example.test' to='example.test'><x xmlns='urn:unknown'/></iq>")
    [reply] = peer.elements()
    assert stanza_error(reply) == "service-unavailable" and reply["to"] == "gw.example.test"


def test_non_stanza_after_handshake_is_a_stream_error():
    """After the handshake only message, presence and iq are accepted."""
    w = World()
    peer = w.attach()
    _send(peer, "<handshake>again</handshake>")
    assert stream_error(peer.elements()) == "unsupported-stanza-type" and peer.closed


def test_stanzas_between_two_components():
    """One component reaches another through the router."""
    w = World(component("gw.example.test"), component("irc.example.test"))
    irc = w.attach("irc.example.test")
    gw = w.attach()
    _send(gw, "<message from='a@gw.example.test' to='#chan%net@irc.example.test'><body>x</body></message>")
    [msg] = irc.elements()
    assert (msg["from"], msg["to"]) == ("a@gw.example.test", "#chan%net@irc.example.test")


def test_duplicate_connection_is_refused_with_conflict():
    """A second authenticated connection for a connected domain gets <conflict/>; the
    first keeps the route."""
    w = World()
    alice = w.login("alice@example.test/a")
    first = w.attach()
    second = w.connect()
    second.handshake()
    assert stream_error(second.elements()) == "conflict" and second.closed
    second.stream.connectionLost(None)
    w.route(stanza("message", "alice@example.test/a", "gw.example.test"))
    assert [m.name for m in first.elements()] == ["message"] and alice.sent == []


def test_replace_closes_the_old_connection():
    """With replace = true the new connection wins: the old one gets <conflict/>, and
    its disconnection does not take the new route away."""
    w = World(component("gw.example.test", replace=True))
    w.login("alice@example.test/a")
    old = w.attach()
    new = w.attach()
    assert stream_error(old.elements()) == "conflict" and old.closed
    old.stream.connectionLost(None)
    w.route(stanza("message", "alice@example.test/a", "gw.example.test"))
    assert [m.name for m in new.elements()] == ["message"]
    assert w.components.sessions["gw.example.test"].stream is new.stream


def test_unconnected_component_bounces_message_and_iq_drops_presence_with_a_log_line():
    """For a configured component that is not connected, a message and an iq request get
    <service-unavailable/> from the component's address; presence is dropped, with a
    log line naming the component; an error message is dropped without an answer."""
    w = World()
    alice = w.login("alice@example.test/a")
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        w.route(stanza("message", "alice@example.test/a", "bot@gw.example.test", "chat"))
        w.route(stanza("iq", "alice@example.test/a", "gw.example.test", "set", payload_ns="urn:x"))
        w.route(stanza("presence", "alice@example.test/a", "bot@gw.example.test"))
        w.route(stanza("presence", "alice@example.test/a", "bot@gw.example.test", "subscribe"))
        w.route(stanza("message", "alice@example.test/a", "bot@gw.example.test", "error"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [(e.name, stanza_error(e), e["from"]) for e in alice.sent] == [
        ("message", "service-unavailable", "bot@gw.example.test"),
        ("iq", "service-unavailable", "gw.example.test")]
    dropped = [e for e in events if e.get("log_format", "").startswith("Dropped")]
    assert len(dropped) == 3 and all(e["domain"] == "gw.example.test" for e in dropped)


def test_disco_items_list_every_configured_component():
    """The server's disco#items provider names every configured component (connected or
    not), with its configured name or else its domain."""
    w = World(component("gw.example.test", name="SMS gateway"), component("irc.example.test"))
    w.attach("irc.example.test")
    assert sorted((jid.full(), name) for jid, name in w.components.disco_items()) == [
        ("gw.example.test", "SMS gateway"), ("irc.example.test", "irc.example.test")]
