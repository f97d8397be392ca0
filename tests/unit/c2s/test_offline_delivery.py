"""Stored messages delivered at login through a real client stream: paced by the
transport's flow control, and removed from storage only once delivered (acked
under stream management; passed on by an open connection without).  And the
session of a closing stream is no destination any more (RFC 6121 §8)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from fedxmpp.c2s.session import TRACKED_WINDOW
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID
from tests.unit.c2s.world import SM, World, q

A = "alice@example.test"
PADDING = "x" * 1000


def fill(w: World, n: int, user: str = "alice") -> None:
    """*n* stored messages of about 1 KB for *user*, numbered from 0."""
    for i in range(n):
        xml = (f"<message xmlns='jabber:client' from='bob@example.test/b' to='{user}@example.test' type='chat'>"
               f"<body>{i}</body><x xmlns='urn:example:pad'>{PADDING}</x></message>")
        Deferred.fromCoroutine(w.storage.offline.store(user, "example.test", xml, 100_000))


def stored(w: World, user: str = "alice") -> list[int]:
    return [int(b) for b in w.offline_bodies(user)]


def numbers(client) -> list[int]:
    return [int(b) for b in client.bodies() if b is not None and b.isdigit()]


def test_without_sm_a_window_at_a_time_and_rows_deleted_once_passed_on():
    """Without SM the flush writes one window (about 32 KB) per turn, deletes
    those rows only once the connection has passed them on, and goes on until
    all 300 arrived in order; the store is then empty."""
    w = World(offline_quota=5000)
    fill(w, 300)
    alice = w.connect("alice")
    alice.bind("r")
    alice.send("<presence/>")
    first = numbers(alice)
    assert 0 < len(first) <= TRACKED_WINDOW // 1000 + 1
    assert first == list(range(len(first)))
    assert len(stored(w)) == 300  # nothing deleted before the bytes were passed on
    got = list(first)
    for _ in range(100):
        w.clock.advance(0)
        got += numbers(alice)
    assert got == list(range(300))
    assert stored(w) == []


def test_without_sm_nothing_is_written_while_the_transport_is_paused():
    """While Twisted has paused the stream (its buffer is full) the flush writes
    nothing; it carries on when the transport resumes."""
    w = World(offline_quota=5000)
    fill(w, 200)
    alice = w.connect("alice")
    alice.bind("r")
    alice.stream.pauseProducing()
    alice.send("<presence/>")
    for _ in range(5):
        w.clock.advance(0)
    assert numbers(alice) == []
    alice.stream.resumeProducing()
    got = numbers(alice)
    for _ in range(100):
        w.clock.advance(0)
        got += numbers(alice)
    assert got == list(range(200))


def test_without_sm_a_drop_mid_flush_keeps_what_was_not_passed_on():
    """A connection lost before its last window was passed on leaves those rows
    and everything not yet sent stored, in order: the next login gets them."""
    w = World(offline_quota=5000)
    fill(w, 100)
    alice = w.connect("alice")
    alice.bind("r")
    alice.send("<presence/>")
    first = numbers(alice)
    alice.stream.pauseProducing()
    w.clock.advance(0)
    assert len(stored(w)) == 100  # paused: the first window is still in Twisted's buffer
    alice.stream.resumeProducing()  # the buffer is empty: confirmed; the second window goes out
    second = numbers(alice)
    assert stored(w) == list(range(len(first), 100))
    alice.drop()
    w.clock.advance(0)
    left = stored(w)
    assert second and left == list(range(len(first), 100))  # the unconfirmed window stays
    again = w.connect("alice")
    again.bind("r")
    again.send("<presence/>")
    got = numbers(again)
    for _ in range(50):
        w.clock.advance(0)
        got += numbers(again)
    assert got == left
    assert stored(w) == []


def test_with_sm_rows_go_only_when_acked_and_unacked_ones_stay_stored_once():
    """Under SM a stored message is deleted when <a h/> covers it.  When the
    session ends with stored messages unacked, they stay stored, in order and
    once (not stored again as unacknowledged stanzas), and the next login gets
    them after the acknowledged ones."""
    w = World(offline_quota=5000, sm_resume_timeout=0)
    fill(w, 40)
    alice = w.connect("alice")
    alice.bind("r")
    alice.enable()
    alice.send("<presence/>")
    sent = [el.findtext(q("body")) for el in alice.stanzas()]  # messages and the presence echo
    assert [int(b) for b in sent if b is not None] == list(range(40))
    assert len(stored(w)) == 40
    acked = sum(1 for b in sent[:25] if b is not None)
    alice.send(f"<a xmlns='{SM}' h='25'/>")
    assert stored(w) == list(range(acked, 40))
    alice.close()
    assert stored(w) == list(range(acked, 40))
    again = w.connect("alice")
    again.bind("r")
    again.send("<presence/>")
    got = numbers(again)
    for _ in range(10):
        w.clock.advance(0)
        got += numbers(again)
    assert got == list(range(acked, 40))


def test_with_sm_the_flush_waits_for_acks_instead_of_overflowing_the_queue():
    """With sm_max_queue = 20 a store of 100 never has more than half the queue
    unacknowledged: the flush waits for acks, and the session is not closed."""
    w = World(offline_quota=5000, sm_max_queue=20, sm_ack_request_every=5)
    fill(w, 100)
    alice = w.connect("alice")
    alice.bind("r")
    alice.enable()
    alice.send("<presence/>")
    got: list[int] = []
    for _ in range(200):
        got += numbers(alice)
        session = w.session(alice)
        assert session is not None and len(session.sm.queue) <= 11  # 10, and maybe the presence echo
        alice.send(f"<a xmlns='{SM}' h='{alice.handled}'/>")
        w.clock.advance(0)
        if len(got) == 100:
            break
    assert got == list(range(100))
    assert stored(w) == []


def test_hibernating_session_gets_the_rest_after_resuming():
    """A flush to an SM session whose connection breaks waits while it
    hibernates and carries on after <resume/>; nothing is lost or stored twice."""
    w = World(offline_quota=5000, sm_max_queue=20)
    fill(w, 60)
    alice = w.connect("alice")
    alice.bind("r")
    alice.enable(resume="true")
    alice.send("<presence/>")
    first = numbers(alice)
    assert first == list(range(10))
    alice.drop()
    w.clock.advance(0)
    assert len(stored(w)) == 60
    again = w.connect("alice")
    again.resume(alice.sm_id, 0)
    got = numbers(again)
    for _ in range(100):
        again.send(f"<a xmlns='{SM}' h='{again.handled}'/>")
        w.clock.advance(0)
        got += numbers(again)
        if stored(w) == []:
            break
    assert got[:len(first)] == first  # sent again after the resume
    assert got[len(first):] == list(range(len(first), 60))
    assert stored(w) == []


# -- no silent window (item 3) ------------------------------------------------------------------


def test_session_of_a_stream_the_client_closed_is_no_destination_at_once():
    """Once the client's </stream:stream> is read, before the connection is gone,
    the session is out of the table: a chat message to its full JID is stored
    offline, and the contact has the unavailable presence."""
    w = World()
    w.befriend("alice", "bob")
    bob = w.connect("bob")
    bob.bind("b")
    bob.send("<presence/>")
    alice = w.connect("alice")
    alice.bind("a")
    alice.send("<presence/>")
    bob.take()
    alice.send("</stream:stream>")  # TCP stays open
    assert w.sessions.get(JID.parse(f"{A}/a")) is None
    unavailable = [p for p in bob.stanzas("presence") if p.get("type") == "unavailable"]
    assert [p.get("from") for p in unavailable] == [f"{A}/a"]
    bob.send(f"<message to='{A}/a' type='chat' id='m1'><body>during the close</body></message>")
    bob.send(f"<message to='{A}' type='chat' id='m2'><body>to the bare JID</body></message>")
    assert w.offline_bodies("alice") == ["during the close", "to the bare JID"]
    assert bob.stanzas("message") == []


def test_session_closed_by_the_server_is_no_destination_at_once():
    """A stream error sent to a client ends its session's routability at once,
    before the connection is gone; an iq to it is answered with an error."""
    w = World()
    bob = w.connect("bob")
    bob.bind("b")
    alice = w.connect("alice")
    alice.bind("a")
    alice.send("<presence/>")
    alice.stream.fail(StreamError("policy-violation"))
    assert w.sessions.get(JID.parse(f"{A}/a")) is None
    bob.send(f"<iq to='{A}/a' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>")
    [reply] = bob.stanzas("iq")
    assert reply.get("type") == "error"
    bob.send(f"<message to='{A}/a' type='chat' id='m1'><body>kept</body></message>")
    assert w.offline_bodies("alice") == ["kept"]


def test_replaced_session_announces_nothing_for_the_address_its_successor_holds():
    """A new binding of the same resource closes the old stream with <conflict/>:
    the old session's end is announced only after the new one holds the address,
    so contacts get no unavailable presence for it, and the new session gets
    what is sent to the address."""
    w = World()
    w.befriend("alice", "bob")
    bob = w.connect("bob")
    bob.bind("b")
    bob.send("<presence/>")
    old = w.connect("alice")
    old.bind("a")
    old.send("<presence/>")
    bob.take()
    new = w.connect("alice")
    new.bind("a")
    w.clock.advance(0)
    assert w.sessions.get(JID.parse(f"{A}/a")) is w.session(new)
    assert [p.get("type") for p in bob.stanzas("presence")] == []
    new.send("<presence/>")
    bob.send(f"<message to='{A}/a' type='chat' id='m1'><body>hello</body></message>")
    assert new.bodies() == ["hello"]


def test_flush_waiting_on_a_paused_stream_survives_its_drop_into_hibernation():
    """A flush waiting for a paused transport when the connection breaks keeps
    waiting while the session hibernates, and goes on after <resume/>."""
    w = World(offline_quota=5000, sm_max_queue=1000)
    fill(w, 30)
    alice = w.connect("alice")
    alice.bind("r")
    alice.enable(resume="true")
    alice.stream.pauseProducing()
    alice.send("<presence/>")
    assert numbers(alice) == []
    alice.drop()
    w.clock.advance(0)
    again = w.connect("alice")
    again.resume(alice.sm_id, 0)
    got = numbers(again)
    for _ in range(20):
        again.send(f"<a xmlns='{SM}' h='{again.handled}'/>")
        w.clock.advance(0)
        got += numbers(again)
    assert got == list(range(30))
    assert stored(w) == []


def test_clean_close_counts_written_archived_stored_messages_as_delivered():
    """Stream management's clean-close rule holds for stored messages too: a
    client that closes its stream itself without acking has the written ones
    the archive holds (stanza-id by the user) removed; the others stay stored."""
    w = World(offline_quota=5000, sm_resume_timeout=0)
    for i in range(4):
        sid = "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.test' id='s{0}'/>".format(i) if i % 2 else ""
        xml = (f"<message xmlns='jabber:client' from='bob@example.test/b' to='alice@example.test' type='chat'>"
               f"<body>{i}</body>{sid}</message>")
        Deferred.fromCoroutine(w.storage.offline.store("alice", "example.test", xml, 100))
    alice = w.connect("alice")
    alice.bind("r")
    alice.enable()
    alice.send("<presence/>")
    assert numbers(alice) == [0, 1, 2, 3]
    alice.close()
    assert stored(w) == [0, 2]
