"""XEP-0198 acknowledgements that wait for storage: what the server acks is
committed first, and what hibernating sessions hold is in storage."""

from __future__ import annotations

from twisted.internet import defer

from tests.unit.c2s.world import SM, World, q

A, B = "alice@example.test", "bob@example.test"


def chat(client, to: str, body: str, mtype: str = "chat", id: str | None = None) -> None:
    ident = f" id='{id}'" if id else ""
    client.send(f"<message to='{to}' type='{mtype}'{ident}><body>{body}</body></message>")


def acks(client) -> list[str]:
    return [el.get("h") for el in client.take() if el.tag == q("a", SM)]


def messages(w: World) -> list:
    return [r for r in w.storage.sm_pending.rows if r.stanza.startswith("<message")]


def slow_offline(w: World) -> defer.Deferred[None]:
    gate: defer.Deferred[None] = defer.Deferred()
    real = w.storage.offline.store

    async def store(*args):
        await gate
        return await real(*args)

    w.storage.offline.store = store
    return gate


def test_ack_waits_until_an_offline_message_is_committed():
    """<r/> after a message to an offline user is answered only once the offline
    row is committed, with the count including it."""
    w = World()
    gate = slow_offline(w)
    a = w.online("alice", "phone")
    chat(a, B, "for later")
    a.send(f"<r xmlns='{SM}'/>")
    assert acks(a) == []
    gate.callback(None)
    assert acks(a) == ["2"]  # the initial presence and the message
    assert w.offline_bodies("bob") == ["for later"]


def test_acks_keep_their_order_and_cover_only_settled_stanzas():
    """Two <r/>: the first, behind an uncommitted store, waits; the second, later,
    waits too (h never covers a stanza before an unsettled one); both come in order."""
    w = World()
    gate = slow_offline(w)
    a = w.online("alice", "phone")
    w.online("carol", "desk", sm=False)
    chat(a, B, "stored")
    a.send(f"<r xmlns='{SM}'/>")
    a.send("<presence to='carol@example.test/desk'/>")  # settled at once, but after the message
    a.send(f"<r xmlns='{SM}'/>")
    assert acks(a) == []
    gate.callback(None)
    assert acks(a) == ["2", "3"]


def test_a_stanza_that_cannot_be_stored_does_not_hold_the_ack():
    """A store that fails answers the sender with an error and settles the stanza:
    the ack is not held for ever."""
    w = World()
    gate = slow_offline(w)
    a = w.online("alice", "phone")
    chat(a, B, "doomed", id="m1")
    a.send(f"<r xmlns='{SM}'/>")
    gate.errback(RuntimeError("disk gone"))
    got = a.take()
    assert [el.get("h") for el in got if el.tag == q("a", SM)] == ["2"]


def test_stanzas_for_a_hibernating_session_are_committed_before_the_senders_ack():
    """A message to a hibernating session counts as settled only once it is in the
    session's store; the queue it had when its connection broke is stored too."""
    w = World()
    w.storage.sm_pending.gate = None
    w.sm.store = w.storage.sm_pending
    bob = w.online("bob", "desk")
    a = w.online("alice", "phone")
    chat(a, f"{B}/desk", "before")
    acks(a)
    bob.drop()
    assert [r.stanza.count("before") for r in messages(w)] == [1]
    gate: defer.Deferred[None] = defer.Deferred()
    w.storage.sm_pending.gate = gate
    chat(a, f"{B}/desk", "while away")
    a.send(f"<r xmlns='{SM}'/>")
    assert acks(a) == []
    gate.callback(None)
    assert acks(a) == ["3"]  # presence, "before", "while away"
    assert ["while away" in r.stanza for r in messages(w)] == [False, True]


def test_resumption_and_the_end_of_a_session_clear_its_store():
    """Resumed, the session's stored stanzas are forgotten (they are sent on the new
    stream); a session that times out stores them offline first, then forgets them."""
    w = World()
    w.sm.store = w.storage.sm_pending
    bob = w.online("bob", "desk")
    a = w.online("alice", "phone")
    bob.drop()
    chat(a, f"{B}/desk", "one")
    assert len(messages(w)) == 1
    back = w.connect("bob")
    back.resume(bob.sm_id, bob.handled)
    assert back.bodies() == ["one"]
    assert w.storage.sm_pending.rows == []
    back.drop()
    chat(a, f"{B}/desk", "two")
    assert len(messages(w)) == 2  # "one" (unacknowledged) and "two"
    w.clock.advance(w.config.c2s.sm_resume_timeout + 1)
    assert w.offline_bodies("bob") == ["one", "two"]
    assert w.storage.sm_pending.rows == []


def test_recovery_after_a_crash_stores_messages_and_bounces_iq():
    """At start-up the rows a dead server left are handled as for a session that
    never came back: chat messages stored offline, iq requests answered with an
    error to their sender, and the rows removed."""
    from fedxmpp.storage import PendingStanza

    w = World()
    w.sm.store = w.storage.sm_pending
    a = w.online("alice", "phone")
    rows = [
        "<message xmlns='jabber:client' from='alice@example.test/phone' to='bob@example.test/desk' "
        "type='chat' id='m1'><body>kept</body></message>",
        "<iq xmlns='jabber:client' from='alice@example.test/phone' to='bob@example.test/desk' type='get' "
        "id='q1'><query xmlns='jabber:iq:version'/></iq>",
    ]
    w.storage.sm_pending.rows = [PendingStanza("rid", "bob", "example.test", "desk", r) for r in rows]
    counted = []
    defer.ensureDeferred(w.sm.recover()).addCallback(counted.append)
    assert counted == [2]
    assert w.offline_bodies("bob") == ["kept"]
    [error] = a.stanzas("iq")
    assert (error.get("type"), error.get("id")) == ("error", "q1")
    assert w.storage.sm_pending.rows == []


def test_a_client_whose_stanzas_wait_for_storage_is_not_read(monkeypatch):
    """Past MAX_UNSETTLED stanzas waiting for a commit, the client's connection is
    not read; below half of it, reading starts again.  The stream's own pause for a
    peer that does not read cannot start it early."""
    from fedxmpp.c2s import session as client_session

    monkeypatch.setattr(client_session, "MAX_UNSETTLED", 4)
    w = World()
    gate = slow_offline(w)
    a = w.online("alice", "phone", sm=False)
    for n in range(5):
        chat(a, B, f"m{n}")
    assert a.transport.producerState == "paused"
    a.stream.resumeProducing()  # the peer reads again: not a reason to read it
    assert a.transport.producerState == "paused"
    gate.callback(None)
    assert a.transport.producerState == "producing"
    assert w.offline_bodies("bob") == [f"m{n}" for n in range(5)]


def test_the_final_ack_never_counts_below_zero():
    """A stanza still unsettled from before <enable/> does not make the last
    <a h/> (sent as the server closes the stream) wrap round to 2**32 - 1: it
    counts what stream management counted and was settled, here 0."""
    from fedxmpp.xml.errors import StreamError

    w = World()
    slow_offline(w)
    a = w.online("alice", "phone", sm=False)
    chat(a, B, "before enable")
    a.enable()
    w.session(a).close(StreamError("system-shutdown"))
    assert acks(a) == ["0"]


def test_a_tracked_stanza_sent_while_hibernating_is_not_stored_twice():
    """An offline message being delivered (send_tracked) is still in offline
    storage: queued for a hibernating session it is not copied into sm_pending,
    where recovery after a crash would store it a second time."""
    from xml.etree import ElementTree

    from fedxmpp.features._shared import element_from_bytes

    w = World()
    w.sm.store = w.storage.sm_pending
    bob = w.online("bob", "desk")
    bob.drop()
    before = len(w.storage.sm_pending.rows)
    stored = element_from_bytes(ElementTree.tostring(ElementTree.fromstring(
        "<message xmlns='jabber:client' to='bob@example.test/desk' type='chat'><body>stored</body></message>")))
    w.session(bob).sm.send_tracked(stored)
    assert len(w.storage.sm_pending.rows) == before
