"""XEP-0352 client state indication on fakes: what an inactive client is spared,
what it still gets at once, and the order in which held updates arrive."""

from __future__ import annotations

from tests.unit.c2s.world import CSI, SM, World, q

A, B, C = "alice@example.test", "bob@example.test", "carol@example.test"
CHATSTATES = "http://jabber.org/protocol/chatstates"


def status(client, text: str) -> None:
    client.send(f"<presence><status>{text}</status></presence>")


def summary(client) -> list[tuple[str, str | None, str | None]]:
    """(kind, from, what) of each stanza received: presence status or type, message
    body or chat state, iq type."""
    out = []
    for el in client.stanzas():
        kind = el.tag.split("}", 1)[1]
        if kind == "presence":
            what = el.findtext(q("status")) or el.get("type")
        elif kind == "message":
            body = el.findtext(q("body"))
            what = body if body is not None else next(iter(el)).tag.split("}", 1)[1]
        else:
            what = el.get("type")
        out.append((kind, el.get("from"), what))
    return out


def world_of_three(**kw):
    w = World(**kw)
    w.befriend("alice", "bob")
    w.befriend("alice", "carol")
    a = w.online("alice", "phone", sm=False)
    b = w.online("bob", "desk", sm=False)
    c = w.online("carol", "desk", sm=False)
    for client in (a, b, c):
        client.take()
    return w, a, b, c


def test_feature_is_offered_with_bind():
    """<csi xmlns='urn:xmpp:csi:0'/> is among the features after SASL."""
    assert World().connect("alice").features.find(q("csi", CSI)) is not None


def test_presence_is_held_coalesced_and_flushed_before_a_message():
    """While alice is inactive, her contacts' presence updates are held, only the
    latest per full JID; a message with a body is delivered at once, right after
    the held updates (in the order their latest versions arrived)."""
    w, a, b, c = world_of_three()
    a.send(f"<inactive xmlns='{CSI}'/>")
    status(b, "b1")
    status(c, "c1")
    status(b, "b2")
    assert summary(a) == []
    b.send(f"<message to='{A}' type='chat'><body>hello</body></message>")
    assert summary(a) == [("presence", f"{C}/desk", "c1"), ("presence", f"{B}/desk", "b2"),
                          ("message", f"{B}/desk", "hello")]
    status(c, "c2")
    assert summary(a) == []  # still inactive


def test_own_presence_subscriptions_and_iq_are_not_held():
    """The client's own presence (its echo), subscription requests and iq are
    delivered at once, each after what is held."""
    w, a, b, c = world_of_three()
    a.send(f"<inactive xmlns='{CSI}'/>")
    status(b, "away")
    status(a, "mine")
    assert summary(a) == [("presence", f"{B}/desk", "away"), ("presence", f"{A}/phone", "mine")]
    status(b, "back")
    b.send(f"<iq type='get' id='v1' to='{A}/phone'><query xmlns='jabber:iq:version'/></iq>")
    assert summary(a) == [("presence", f"{B}/desk", "back"), ("iq", f"{B}/desk", "get")]
    w.storage.accounts.put("dave", "example.test", {})
    d = w.online("dave", "x", sm=False, presence=False)
    d.send(f"<presence to='{A}' type='subscribe'/>")
    assert summary(a) == [("presence", "dave@example.test", "subscribe")]


def test_chat_states_are_held_latest_per_sender():
    """A message that carries only a chat state is held like presence, the latest
    per sender; unavailable presence replaces available from the same resource."""
    w, a, b, c = world_of_three()
    a.send(f"<inactive xmlns='{CSI}'/>")
    for state in ("composing", "paused"):
        b.send(f"<message to='{A}/phone' type='chat'><{state} xmlns='{CHATSTATES}'/></message>")
    status(c, "here")
    c.send("<presence type='unavailable'/>")
    assert summary(a) == []
    a.send(f"<active xmlns='{CSI}'/>")
    assert summary(a) == [("message", f"{B}/desk", "paused"), ("presence", f"{C}/desk", "unavailable")]


def test_active_flushes_and_ends_holding():
    """<active/> delivers what is held; after it, updates arrive at once."""
    w, a, b, c = world_of_three()
    a.send(f"<inactive xmlns='{CSI}'/>")
    status(b, "one")
    status(b, "two")
    a.send(f"<active xmlns='{CSI}'/>")
    assert summary(a) == [("presence", f"{B}/desk", "two")]
    status(b, "three")
    assert summary(a) == [("presence", f"{B}/desk", "three")]
    a.send(f"<active xmlns='{CSI}'/>")  # active again: harmless
    assert summary(a) == [] and not a.stream.closed


def test_held_updates_are_bounded():
    """With csi_max_held = 1, a second sender's update delivers everything held."""
    w, a, b, c = world_of_three(csi_max_held=1)
    a.send(f"<inactive xmlns='{CSI}'/>")
    status(b, "b1")
    status(b, "b2")
    assert summary(a) == []
    status(c, "c1")
    assert summary(a) == [("presence", f"{B}/desk", "b2"), ("presence", f"{C}/desk", "c1")]


def test_held_stanzas_are_not_counted_by_stream_management_until_released():
    """Held presence is not sent, so stream management neither counts nor queues it
    until it is released; then the client's h covers it."""
    w = World(sm_ack_request_every=100)
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    managed = w.session(a).sm
    a.send(f"<a xmlns='{SM}' h='{a.handled}'/>")
    sent = managed.sent
    a.send(f"<inactive xmlns='{CSI}'/>")
    status(b, "held")
    assert managed.sent == sent and not managed.queue
    a.send(f"<active xmlns='{CSI}'/>")
    assert [el.findtext(q("status")) for el in a.stanzas("presence")] == ["held"]
    assert managed.sent == sent + 1 and len(managed.queue) == 1
    a.send(f"<a xmlns='{SM}' h='{a.handled}'/>")
    assert not managed.queue


def test_a_resumed_stream_starts_active():
    """XEP-0352 §5: the client state is not kept across stream resumption: what was
    held arrives after the queued stanzas, and later updates arrive at once."""
    w, a, b, c = world_of_three()
    a.send(f"<enable xmlns='{SM}' resume='true'/>")
    sm_id = a.take()[0].get("id")
    a.send(f"<inactive xmlns='{CSI}'/>")
    a.drop()
    c.send(f"<message to='{A}/phone' type='chat'><body>queued</body></message>")
    status(b, "held")
    a2 = w.connect("alice")
    assert a2.resume(sm_id, 0).tag == q("resumed", SM)
    assert summary(a2) == [("message", f"{C}/desk", "queued"), ("presence", f"{B}/desk", "held")]
    status(b, "live")
    assert summary(a2) == [("presence", f"{B}/desk", "live")]
