"""Offline messages (XEP-0160) with delay stamps (XEP-0203), and messages to
users who do not exist (RFC 6121 §8.5.2.2)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from fedxmpp.im.offline import DELAY
from fedxmpp.xml.parser import parse_stanza
from fedxmpp.storage import StorageError
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from fedxmpp.xml.serialize import serialize
from tests.unit.fakes import FakeSession
from tests.unit.im.world import World, received, stanza_error

A, B = "alice@example.test", "bob@example.test"


def body(message: domish.Element) -> str:
    return next(str(c) for c in message.elements() if c.name == "body")


def bodies(session: FakeSession) -> list[str]:
    return [body(m) for m in received(session, "message")]


def test_message_to_offline_user_is_stored_with_a_delay_and_delivered_once():
    """A chat message to a user with no available resource is stored with
    <delay from='domain' stamp='UTC'/>; the user's next initial presence gets it,
    and the one after does not."""
    w = World()
    sender = w.online(f"{A}/a")
    w.message(f"{A}/a", B, "while you were out")
    assert received(sender, "message") == []  # no error
    assert len(w.storage.offline.messages[("bob", "example.test")]) == 1
    b = w.online(f"{B}/b")
    [msg] = received(b, "message")
    assert body(msg) == "while you were out"
    delay = next(msg.elements(DELAY, "delay"))
    assert (delay["from"], delay["stamp"]) == ("example.test", "2023-11-14T22:13:20Z")
    assert msg["from"] == f"{A}/a"
    w.end(b)
    b2 = w.online(f"{B}/b")
    assert received(b2, "message") == []


def test_normal_and_full_jid_fallback_are_stored_headline_is_not():
    """Type normal (or none) to the bare JID and chat to an absent full JID are
    stored; headline is not (XEP-0160 §3)."""
    w = World()
    w.message(f"{A}/a", B, "one", type=None)
    w.message(f"{A}/a", f"{B}/gone", "two", type="chat")
    w.message(f"{A}/a", B, "news", type="headline")
    b = w.online(f"{B}/b")
    assert bodies(b) == ["one", "two"]


def test_negative_priority_does_not_release_offline_messages():
    """Only available presence with a non-negative priority releases stored
    messages; a later non-negative one does."""
    w = World()
    w.message(f"{A}/a", B, "stored")
    b = w.online(f"{B}/b", priority=-1)
    assert bodies(b) == []
    w.message(f"{A}/a", B, "also stored")  # negative priority never gets bare-JID messages
    assert bodies(b) == []
    w.presence(b, priority=1)
    assert bodies(b) == ["stored", "also stored"]


def test_message_to_user_that_does_not_exist():
    """§8.5.2.2.1: chat to a local address without an account is answered with
    <service-unavailable/>."""
    w = World()
    a = w.online(f"{A}/a")
    w.message(f"{A}/a", "ghost@example.test", "boo")
    [err] = received(a, "message", "error")
    assert stanza_error(err) == "service-unavailable"


def test_full_quota_answers_service_unavailable():
    """XEP-0160 §2: when the user's offline store is full, the sender gets
    <service-unavailable/> and nothing more is kept."""
    w = World(offline_quota=2)
    a = w.online(f"{A}/a")
    for n in range(3):
        w.message(f"{A}/a", B, f"m{n}")
    [err] = received(a, "message", "error")
    assert stanza_error(err) == "service-unavailable"
    assert "full" in str(next(next(err.elements(None, "error")).elements(ns.STANZA_ERRORS, "text")))
    assert len(w.storage.offline.messages[("bob", "example.test")]) == 2


def test_chat_state_only_message_is_dropped_quietly():
    """A message with nothing but a chat state is neither stored nor answered
    with an error (XEP-0085 §5.8)."""
    w = World()
    a = w.online(f"{A}/a")
    m = domish.Element((ns.CLIENT, "message"))
    m["from"], m["to"], m["type"] = f"{A}/a", B, "chat"
    m.addElement(("http://jabber.org/protocol/chatstates", "composing"))
    w.router.route(m, JID.parse(m["from"]), JID.parse(B))
    assert received(a, "message") == []
    assert ("bob", "example.test") not in w.storage.offline.messages


def test_storage_failure_is_reported_to_the_sender():
    """A database error while storing is an <internal-server-error/>, never silence."""
    w = World()
    a = w.online(f"{A}/a")

    async def broken(*args):
        raise StorageError("disk full")

    w.storage.offline.store = broken
    w.message(f"{A}/a", B, "lost?")
    [err] = received(a, "message", "error")
    assert stanza_error(err) == "internal-server-error"


def test_messages_arriving_during_the_flush_come_after_stored_ones():
    """While stored messages are being fetched, a new message to the bare JID waits,
    so the user sees them in the order they were sent."""
    w = World()
    w.message(f"{A}/a", B, "old")
    gate: Deferred[None] = Deferred()
    original = w.storage.offline.read

    async def slow_read(*args):
        await gate
        return await original(*args)

    w.storage.offline.read = slow_read
    b = w.online(f"{B}/b")
    w.message(f"{A}/a", B, "new")
    assert bodies(b) == []
    gate.callback(None)
    assert bodies(b) == ["old", "new"]


def test_stored_form_parses_back():
    """What is stored (serialize for jabber:client) parses back to the same stanza,
    special characters and foreign namespaces included."""
    m = domish.Element((ns.SERVER, "message"))
    m["from"], m["to"] = "a@x.test/r", "b@y.test"
    m.addElement("body", content="<&> ' \" ✓")
    m.addElement(("urn:example:x", "x"))["attr"] = "v'"
    back = parse_stanza(serialize(m, ns.CLIENT), 100_000, 16)
    assert back is not None
    assert back.uri == ns.CLIENT and back["from"] == "a@x.test/r"
    assert str(next(back.elements(ns.CLIENT, "body"))) == "<&> ' \" ✓"
    assert next(back.elements("urn:example:x", "x"))["attr"] == "v'"
    assert parse_stanza("<message><unclosed></message>", 100_000, 16) is None


def test_offline_storage_is_advertised():
    """XEP-0160 §4: the server lists the 'msgoffline' feature."""
    assert "msgoffline" in World().ctx.disco.server_features
    assert "msgoffline" not in World(offline_quota=0).ctx.disco.server_features
