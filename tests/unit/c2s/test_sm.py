"""XEP-0198 stream management on fakes: acks both ways, hibernation, resumption,
and where unacknowledged stanzas go when a session never comes back."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.c2s.sm import MASK
from fedxmpp.xml.errors import StreamError
from tests.unit.c2s.world import SM, World, condition, q, stream_error, to_text

A, B = "alice@example.test", "bob@example.test"


def chat(client, to: str, body: str, mtype: str = "chat") -> None:
    client.send(f"<message to='{to}' type='{mtype}'><body>{body}</body></message>")


def nonzas(client) -> list[str]:
    return [to_text(el) for el in client.take() if el.tag.startswith(f"{{{SM}}}")]


def presences(client) -> list[tuple[str, str | None]]:
    return [(p.get("from"), p.get("type")) for p in client.stanzas("presence")]


# -- enabling -------------------------------------------------------------------------------


def test_feature_offered_with_bind_and_enable_answers_with_a_resume_id():
    """<sm xmlns='urn:xmpp:sm:3'/> is among the features after SASL; <enable
    resume='true'/> after binding gets <enabled/> with an id, resume='true' and the
    server's maximum resumption time, lowered to the client's 'max' if smaller."""
    w = World()
    c = w.connect("alice")
    assert c.features.find(q("sm", SM)) is not None
    c.bind("phone")
    enabled = c.enable(resume="true", max="120")
    assert enabled.get("resume") == "true" and len(enabled.get("id", "")) >= 16
    assert enabled.get("max") == "120"
    other = w.online("bob", "desk", presence=False)
    assert other.sm_id != c.sm_id
    greedy = w.connect("carol")
    greedy.bind("x")
    assert greedy.enable(resume="true", max="100000").get("max") == "300"


def test_enable_without_resume_or_with_resumption_off_gives_no_id():
    """Without resume='true', or with [c2s] sm_resume_timeout = 0, <enabled/> has no
    id: acks only."""
    c = World().online("alice", "phone", resume="false", presence=False)
    assert c.sm_id is None
    c2 = World(sm_resume_timeout=0).online("alice", "phone", presence=False)
    assert c2.sm_id is None


def test_enable_before_bind_twice_and_acks_before_enable_fail():
    """<enable/> before binding, a second <enable/>, and <r/> before enabling are each
    answered with <failed><unexpected-request/></failed>; the stream stays open."""
    w = World()
    c = w.connect("alice")
    c.send(f"<enable xmlns='{SM}'/>")
    assert condition(c.expect(q("failed", SM))) == "unexpected-request"
    c.bind("phone")
    c.send(f"<r xmlns='{SM}'/>")
    assert condition(c.expect(q("failed", SM))) == "unexpected-request"
    c.enable()
    c.send(f"<enable xmlns='{SM}'/>")
    assert condition(c.expect(q("failed", SM))) == "unexpected-request"
    assert not c.stream.closed


# -- acks -------------------------------------------------------------------------------------


def test_client_stanzas_are_counted_and_r_answered():
    """Every stanza the client sends after <enable/> counts towards h, whatever
    becomes of it (here an iq the server answers with an error); nonzas do not."""
    w = World()
    c = w.online("alice", "phone")
    c.send(f"<r xmlns='{SM}'/>")
    assert nonzas(c) == [f'<ns0:a xmlns:ns0="{SM}" h="1" />']  # the initial presence
    chat(c, "nobody@example.test", "x")
    c.send("<iq type='get' id='1' to='example.test'><nothing xmlns='urn:example:none'/></iq>")
    c.send(f"<r xmlns='{SM}'/>")
    assert [el.get("h") for el in c.take() if el.tag == q("a", SM)] == ["3"]


def test_inbound_count_wraps_at_2_to_the_32():
    """h is counted modulo 2**32 (XEP-0198 §5)."""
    w = World()
    c = w.online("alice", "phone", presence=False)
    w.session(c).sm.h_in = MASK
    c.send("<presence/>")
    c.send(f"<r xmlns='{SM}'/>")
    assert [el.get("h") for el in c.take() if el.tag == q("a", SM)] == ["0"]


def test_server_asks_for_an_ack_every_n_stanzas_and_not_again_while_waiting():
    """With sm_ack_request_every = 3 the server sends <r/> after the third stanza
    since it last asked, none while its request is unanswered, and asks again three
    stanzas after the answer."""
    w = World(sm_ack_request_every=3, sm_ack_request_delay=0)
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    for i in range(2):
        chat(b, f"{A}/phone", f"m{i}")
    assert [el.tag for el in a.take()] == [q("message")] * 2
    chat(b, f"{A}/phone", "m2")
    assert [el.tag for el in a.take()] == [q("message"), q("r", SM)]
    for i in range(3, 7):
        chat(b, f"{A}/phone", f"m{i}")
    assert [el.tag for el in a.take()] == [q("message")] * 4  # still waiting: no second <r/>
    a.send(f"<a xmlns='{SM}' h='{a.handled}'/>")
    for i in range(7, 10):
        chat(b, f"{A}/phone", f"m{i}")
    assert [el.tag for el in a.take()] == [q("message")] * 3 + [q("r", SM)]


def test_server_asks_for_an_ack_after_the_delay():
    """One unacknowledged stanza is enough for an <r/> sm_ack_request_delay seconds
    later; nothing is asked earlier, and nothing when everything is acknowledged."""
    w = World(sm_ack_request_every=100, sm_ack_request_delay=10)
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    chat(b, f"{A}/phone", "one")
    w.clock.advance(9.9)
    assert nonzas(a) == []
    w.clock.advance(0.1)
    assert nonzas(a) == [f'<ns0:r xmlns:ns0="{SM}" />']
    a.send(f"<a xmlns='{SM}' h='1'/>")
    w.clock.advance(60)
    assert nonzas(a) == []


def test_acks_release_the_queue_modulo_2_to_the_32():
    """<a h/> drops the acknowledged stanzas from the queue, counting across the
    2**32 wrap."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    managed = w.session(a).sm
    managed.acked = managed.sent = MASK - 1
    for i in range(4):
        chat(b, f"{A}/phone", f"m{i}")
    assert managed.sent == 2 and len(managed.queue) == 4
    a.send(f"<a xmlns='{SM}' h='0'/>")
    assert [str(m.body) for m in managed.queue] == ["m2", "m3"]
    a.send(f"<a xmlns='{SM}' h='2'/>")
    assert len(managed.queue) == 0


def test_ack_of_more_than_was_sent_is_a_stream_error():
    """An h above what was sent closes the stream with <undefined-condition/> and
    <handled-count-too-high h send-count/> (XEP-0198 §4)."""
    w = World()
    a = w.online("alice", "phone")
    a.send(f"<a xmlns='{SM}' h='7'/>")
    err = a.take()[-1]
    assert stream_error(err) == "undefined-condition"
    app = err.find(q("handled-count-too-high", SM))
    assert app is not None and (app.get("h"), app.get("send-count")) == ("7", "1")
    assert a.stream.closed


# -- hibernation and resumption -------------------------------------------------------------------


def test_dropped_session_hibernates_and_resumes_with_everything_unacked_in_order():
    """When the connection breaks the session stays bound and available (its contact
    sees no unavailable presence); stanzas for it are queued.  <resume/> with the h
    the client reached gets <resumed h/> (what the server handled of the client's),
    then every stanza after that h, in order, and the session keeps its full JID and
    presence; later stanzas go to the new stream."""
    w = World()
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    chat(b, f"{A}/phone", "before-1")
    chat(b, A, "before-2")
    got = a.bodies()
    assert got == ["before-1", "before-2"]
    handled = a.handled
    b.take()
    a.drop()
    session = w.session(a)
    assert session is not None and session.available and session.sm.hibernating
    chat(b, A, "while-away")  # to the bare JID: still goes to the hibernating session
    assert presences(b) == []

    a2 = w.connect("alice")
    resumed = a2.resume(a.sm_id, handled - 1)  # the client missed the last one
    assert resumed.tag == q("resumed", SM)
    assert (resumed.get("previd"), resumed.get("h")) == (a.sm_id, "1")
    assert a2.bodies() == ["before-2", "while-away"]
    assert w.session(a) is session and session.stream is a2.stream
    assert session.available and session.presence is not None
    chat(b, f"{A}/phone", "after")
    assert a2.bodies() == ["after"]
    assert presences(b) == []
    a2.send(f"<r xmlns='{SM}'/>")
    assert [el.get("h") for el in a2.take() if el.tag == q("a", SM)] == ["1"]
    w.clock.advance(61)  # past the negotiation timeout: resuming completed negotiation
    assert not a2.stream.closed


def test_resume_while_the_old_stream_is_open_closes_it_with_conflict():
    """A client that resumes before the server noticed its old connection die gets
    the session; the old stream is closed with <conflict/>, and its end later does
    not end the session."""
    w = World()
    a = w.online("alice", "phone")
    a2 = w.connect("alice")
    assert a2.resume(a.sm_id, a.handled).tag == q("resumed", SM)
    assert [stream_error(el) for el in a.take()] == ["conflict"]
    assert a.stream.closed
    a.drop()  # the old connection's end arrives now
    session = w.session(a)
    assert session is not None and session.stream is a2.stream and not session.sm.hibernating
    b = w.online("bob", "desk", sm=False, presence=False)
    chat(b, f"{A}/phone", "still here")
    assert a2.bodies() == ["still here"]


def test_unknown_or_foreign_resume_id_is_item_not_found_and_binding_still_works():
    """<resume/> with an id nobody has, or with another user's id, gets <failed>
    with <item-not-found/> and no h; the stream may then bind."""
    w = World()
    a = w.online("alice", "phone")
    a.drop()
    for user, previd in (("bob", "no-such-id"), ("bob", a.sm_id)):
        c = w.connect(user)
        failed = c.resume(previd, 0)
        assert failed.tag == q("failed", SM) and condition(failed) == "item-not-found"
        assert failed.get("h") is None
        assert c.bind("desk") == f"{B}/desk"
    assert w.session(a).sm.hibernating  # alice's session was not touched


def test_session_not_resumed_in_time_ends_and_unacked_stanzas_go_to_offline_or_back():
    """After sm_resume_timeout the hibernating session ends: its contact now gets the
    unavailable presence (not before), unacknowledged chat and normal messages are
    stored offline in order (and delivered at the next login), an iq request is
    answered with <service-unavailable/>, a headline and presence are dropped; the
    expired id gets <failed h/> with <item-not-found/>."""
    w = World(sm_resume_timeout=60, sm_ack_request_every=100)
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    b.take()
    chat(b, f"{A}/phone", "one")
    a.drop()
    chat(b, A, "two", mtype="normal")
    b.send(f"<iq type='get' id='q1' to='{A}/phone'><query xmlns='jabber:iq:version'/></iq>")
    chat(b, f"{A}/phone", "news", mtype="headline")
    b.send(f"<presence to='{A}/phone'><status>directed</status></presence>")
    w.clock.advance(59)
    assert b.take() == [] and w.offline_bodies("alice") == []
    w.clock.advance(1)
    assert w.session(a) is None
    assert w.offline_bodies("alice") == ["one", "two"]
    got = b.take()
    assert [(el.tag, el.get("type"), condition(el)) for el in got] == [
        (q("presence"), "unavailable", None), (q("iq"), "error", "service-unavailable")]
    failed = w.connect("alice").resume(a.sm_id, 0)
    assert condition(failed) == "item-not-found" and failed.get("h") == "1"  # her initial presence

    again = w.online("alice", "laptop", sm=False, presence=False)
    again.send("<presence/>")
    assert again.bodies() == ["one", "two"]


def test_clean_close_ends_the_session_at_once_and_stores_what_was_unacked():
    """A client that closes its stream with </stream:stream> is gone for good (no
    hibernation): its contacts see it go, unacknowledged messages are stored."""
    w = World(sm_ack_request_every=100)
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    b.take()
    chat(b, f"{A}/phone", "unread")
    a.close()
    assert w.session(a) is None
    assert presences(b) == [(f"{A}/phone", "unavailable")]
    assert w.offline_bodies("alice") == ["unread"]
    assert condition(w.connect("alice").resume(a.sm_id, 0)) == "item-not-found"


@pytest.mark.parametrize("condition_sent, hibernates", [("connection-timeout", True), ("policy-violation", False),
                                                         ("system-shutdown", False)])
def test_only_a_broken_or_idle_connection_hibernates(condition_sent, hibernates):
    """An idle timeout (a connection that probably died) leaves the session
    resumable; a stream error for anything else ends it."""
    w = World()
    a = w.online("alice", "phone")
    a.stream.fail(StreamError(condition_sent))
    a.drop()
    session = w.session(a)
    assert (session is not None and session.sm.hibernating) == hibernates


def test_non_resumable_session_ends_when_dropped_and_stores_unacked():
    """Stream management without resumption: a dropped connection ends the session
    at once, and its unacknowledged messages are stored."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", resume="false")
    b = w.online("bob", "desk", sm=False, presence=False)
    chat(b, f"{A}/phone", "lost?")
    a.drop()
    assert w.session(a) is None
    assert w.offline_bodies("alice") == ["lost?"]


def test_new_binding_of_the_resource_replaces_a_hibernating_session():
    """Binding the resource of a hibernating session replaces it (RFC 6120 conflict
    rule): it ends, its unacknowledged messages are stored and reach the new session
    with its initial presence, its id can no longer be resumed, and contacts see no
    unavailable presence for the address the new session holds."""
    w = World(sm_ack_request_every=100)
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    b.take()
    chat(b, f"{A}/phone", "queued")
    a.drop()
    new = w.connect("alice")
    new.bind("phone")
    w.clock.advance(0)
    assert w.offline_bodies("alice") == ["queued"]
    assert presences(b) == []
    new.send("<presence/>")
    assert new.bodies() == ["queued"]
    failed = w.connect("alice").resume(a.sm_id, 0)
    assert condition(failed) == "item-not-found"


def test_queue_overflow_on_a_live_stream_closes_it_and_stores_everything():
    """One stanza over sm_max_queue closes the stream with <resource-constraint/>;
    every queued message, and those arriving until the connection is gone, is stored
    in order; the session does not hibernate."""
    w = World(sm_max_queue=3, sm_ack_request_every=3)
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    for i in range(4):
        chat(b, f"{A}/phone", f"m{i}")
    assert stream_error(a.take()[-1]) == "resource-constraint"
    assert w.offline_bodies("alice") == ["m0", "m1", "m2", "m3"]
    chat(b, f"{A}/phone", "m4")
    a.drop()
    assert w.session(a) is None
    assert w.offline_bodies("alice") == ["m0", "m1", "m2", "m3", "m4"]


def test_queue_overflow_while_hibernating_ends_the_session():
    """A hibernating session whose queue overflows ends; nothing is lost."""
    w = World(sm_max_queue=3, sm_ack_request_every=3)
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    a.drop()
    for i in range(5):
        chat(b, f"{A}/phone", f"m{i}")
    w.clock.advance(0)
    assert w.session(a) is None
    assert w.offline_bodies("alice") == [f"m{i}" for i in range(5)]
    assert condition(w.connect("alice").resume(a.sm_id, 0)) == "item-not-found"


def test_shutdown_ends_hibernating_sessions():
    """At shutdown a hibernating session ends at once, so what it holds reaches
    offline storage while storage is open."""
    w = World()
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    a.drop()
    chat(b, f"{A}/phone", "kept")
    w.sm.shutdown()
    assert w.session(a) is None
    assert w.offline_bodies("alice") == ["kept"]


def test_copies_are_not_stored_and_a_delay_stamp_is_kept():
    """Of the unacknowledged messages, a carbon copy (XEP-0280) is neither stored nor
    bounced; a message that already carries this server's delay keeps that one stamp."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    b = w.online("bob", "desk", sm=False, presence=False)
    b.send(f"<message to='{A}/phone' type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>")
    b.send(f"<message to='{A}/phone' type='chat'><body>old</body>"
           f"<delay xmlns='urn:xmpp:delay' from='example.test' stamp='2020-01-01T00:00:00Z'/></message>")
    a.close()
    assert w.offline_bodies("alice") == ["old"]
    [text] = w.storage.offline.messages[("alice", "example.test")]
    assert text.count("urn:xmpp:delay") == 1 and "2020-01-01T00:00:00Z" in text
    assert b.take() == []


def test_unanswered_ack_request_drops_the_connection_and_the_session_hibernates():
    """A dead link that TCP has not noticed: when an <r/> goes unanswered for
    sm_max_ack_delay seconds the connection is aborted as broken, so the session
    hibernates (still resumable, no unavailable broadcast) instead of waiting for
    idle_timeout.  An answered request keeps the connection."""
    w = World(sm_ack_request_every=1, sm_ack_request_delay=0, sm_max_ack_delay=20)
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    b.take()
    chat(b, f"{A}/phone", "answered")
    assert a.bodies() == ["answered"]
    a.send(f"<a xmlns='{SM}' h='{a.handled}'/>")
    w.clock.advance(30)
    assert not a.transport.disconnected

    chat(b, f"{A}/phone", "into the void")
    w.clock.advance(19.9)
    assert not a.transport.disconnected
    w.clock.advance(0.2)
    assert a.transport.disconnected  # aborted: no closing tag, as for a broken network
    a.drop()
    session = w.session(a)
    assert session is not None and session.sm.hibernating
    assert presences(b) == []


# -- the end of a stream: the last ack, and no duplicates after a clean close -----------------


def archived_message(frm: str, to: str, body: str, archive_id: str | None):
    """A message as delivery hands it to a session, with the recipient archive's
    stanza-id when *archive_id* is given (what XEP-0313 adds before delivery)."""
    msg = domish.Element(("jabber:client", "message"))
    msg["from"], msg["to"], msg["type"] = frm, to, "chat"
    msg.addElement("body", content=body)
    if archive_id is not None:
        sid = msg.addElement(("urn:xmpp:sid:0", "stanza-id"))
        sid["by"], sid["id"] = to.split("/")[0], archive_id
    return msg


@pytest.mark.parametrize("condition_sent", ["system-shutdown", "resource-constraint"])
def test_server_sends_a_last_ack_before_its_stream_error(condition_sent):
    """XEP-0198 §4: before the server ends an SM stream with a stream error (SIGTERM's
    <system-shutdown/> included), it tells the client how many of its stanzas it
    handled, so that the client resends none of them."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    w.online("bob", "desk", sm=False, presence=False)
    for i in range(3):
        chat(a, B, f"m{i}")
    a.take()
    a.stream.fail(StreamError(condition_sent))
    got = a.take()
    assert [to_text(el) for el in got[:1]] == [f'<ns0:a xmlns:ns0="{SM}" h="3" />']
    assert stream_error(got[1]) == condition_sent


def test_server_answers_a_clean_close_with_a_last_ack_before_its_closing_tag():
    """The server's answer to the client's </stream:stream> starts with <a h/>."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    w.online("bob", "desk", sm=False, presence=False)
    chat(a, B, "one")
    a.take()
    a.send("</stream:stream>")
    got = a.take()
    assert [el.tag for el in got] == [q("a", SM)] and got[0].get("h") == "1"
    assert a.closed_tag


def test_without_stream_management_nothing_precedes_the_stream_error():
    """A client that never enabled XEP-0198 gets no <a/>."""
    w = World()
    a = w.online("alice", "phone", sm=False, presence=False)
    a.stream.fail(StreamError("system-shutdown"))
    assert [stream_error(el) for el in a.take()] == ["system-shutdown"]


def test_clean_close_counts_archived_messages_as_handled_and_stores_the_rest():
    """A client that closes its stream itself does not get again, from offline
    storage, the unacknowledged messages its archive holds (it would show them
    twice); a message the archive does not hold is still stored."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    session = w.session(a)
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "archived", "arch-1"))
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "not archived", None))
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "someone else's id", None))
    foreign = session.sm.queue[-1].addElement(("urn:xmpp:sid:0", "stanza-id"))
    foreign["by"], foreign["id"] = B, "x"
    assert a.bodies() == ["archived", "not archived", "someone else's id"]
    a.close()
    assert w.offline_bodies("alice") == ["not archived", "someone else's id"]


def test_dropped_connection_stores_every_unacked_message_archived_or_not():
    """At-least-once: when the connection breaks without a closing tag, the client
    may not have seen them: every unacknowledged message is stored again."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False, resume="false")
    session = w.session(a)
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "archived", "arch-1"))
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "not archived", None))
    a.drop()
    assert w.offline_bodies("alice") == ["archived", "not archived"]


def test_message_queued_after_the_client_closed_its_stream_is_still_stored():
    """Between the client's </stream:stream> and the end of the connection nothing
    more reaches the client: an archived message queued then was never seen, and
    is stored, not counted as handled."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    session = w.session(a)
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "seen", "arch-1"))
    a.send("</stream:stream>")
    session.send(archived_message(f"{B}/desk", f"{A}/phone", "too late", "arch-2"))
    a.stream.connectionLost(Failure(ConnectionDone()))
    assert w.offline_bodies("alice") == ["too late"]


def test_resumed_session_counts_resent_stanzas_as_written():
    """What a hibernating session queued is written on resumption; a clean close
    after that treats it like any other written stanza."""
    w = World(sm_ack_request_every=100)
    a = w.online("alice", "phone", presence=False)
    a.drop()
    w.session(a).send(archived_message(f"{B}/desk", f"{A}/phone", "while away", "arch-1"))
    again = w.connect("alice")
    again.resume(a.sm_id, 0)
    assert again.bodies() == ["while away"]
    again.close()
    assert w.offline_bodies("alice") == []
