"""Presence (RFC 6121 §4) and subscriptions carried out between users (§3)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from fedxmpp.storage import RosterItem
from tests.unit.im.world import World, presences, pushes, received, remote_sent

A, B, C = "alice@example.test", "bob@example.test", "carol@example.test"


def both(w: World, x: str, y: str) -> None:
    """Make x and y mutually subscribed, in storage."""
    for owner, contact in ((x, y), (y, x)):
        w.storage.roster.rosters.setdefault((owner.split("@")[0], "example.test"), {})[contact] = \
            RosterItem(contact, None, "both", False, False, ())


def test_subscription_handshake_between_local_users():
    """alice subscribes to bob, bob approves, bob subscribes back, alice approves:
    each side gets the stanzas and pushes of RFC 6121 §3.1, ending in 'both' with
    each seeing the other's presence."""
    w = World()
    a = w.online(f"{A}/a")
    b = w.online(f"{B}/b")
    a.sent.clear(), b.sent.clear()

    w.presence(a, to=B, type="subscribe")
    assert pushes(a) == [(B, "none", "subscribe")]
    assert presences(b) == [(A, "subscribe")]

    w.presence(b, to=A, type="subscribed")
    assert pushes(b) == [(A, "from", None)]
    assert pushes(a) == [(B, "to", None)]
    assert presences(a) == [(B, "subscribed"), (f"{B}/b", None)]  # and bob's presence at once

    w.presence(b, to=A, type="subscribe")
    assert presences(a) == [(B, "subscribe")]
    w.presence(a, to=B, type="subscribed")
    assert presences(b) == [(A, "subscribed"), (f"{A}/a", None)]
    assert w.item("alice", B).subscription == w.item("bob", A).subscription == "both"

    a.sent.clear(), b.sent.clear()
    w.presence(a, status="away for lunch")
    assert presences(b) == [(f"{A}/a", None)]


def test_request_to_offline_user_is_presented_at_next_login():
    """A subscription request to a user with no available resource is stored and
    delivered when the user next sends initial presence (§3.1.3)."""
    w = World()
    a = w.online(f"{A}/a")
    w.presence(a, to=B, type="subscribe")
    b = w.online(f"{B}/b")
    assert (A, "subscribe") in presences(b)
    # ...and again at the next login, as long as it is unanswered.
    w.end(b)
    b2 = w.online(f"{B}/b2")
    assert (A, "subscribe") in presences(b2)


def test_initial_presence_probes_and_broadcasts():
    """§4.2: bob's initial presence reaches alice (a 'from' subscriber), and his
    probe makes alice's server send her presence to bob; remote contacts are probed
    from bob's bare JID through the router."""
    w = World()
    both(w, A, B)
    w.storage.roster.rosters[("bob", "example.test")]["romeo@remote.test"] = \
        RosterItem("romeo@remote.test", None, "to", False, False, ())
    a = w.online(f"{A}/a")
    a.sent.clear()
    b = w.online(f"{B}/b")
    assert presences(a) == [(f"{B}/b", None)]
    assert presences(b) == [(f"{B}/b", None), (f"{A}/a", None)]
    assert remote_sent(w) == [("presence", "probe", B, "romeo@remote.test")]


def test_killed_session_broadcasts_unavailable():
    """When a connection dies without unavailable presence, the server sends
    unavailable from that resource to subscribers and the user's other resources."""
    w = World()
    both(w, A, B)
    a = w.online(f"{A}/a")
    b1 = w.online(f"{B}/one")
    b2 = w.online(f"{B}/two")
    a.sent.clear(), b2.sent.clear()
    w.end(b1)
    assert presences(a) == [(f"{B}/one", "unavailable")]
    assert presences(b2) == [(f"{B}/one", "unavailable")]


def test_directed_presence_gets_unavailable_at_the_end():
    """§4.6: an entity that got directed presence (and is no subscriber) gets
    unavailable when the session ends; one that already got directed unavailable
    does not get it twice."""
    w = World()
    a = w.online(f"{A}/a")
    c = w.online(f"{C}/c")
    c.sent.clear()
    w.presence(a, to="room@muc.remote.test/alice")
    w.presence(a, to=f"{C}/c")
    w.presence(a, to=f"{C}/c", type="unavailable")
    assert presences(c) == [(f"{A}/a", None), (f"{A}/a", "unavailable")]
    remote_sent(w)
    w.end(a)
    assert presences(c) == []
    assert remote_sent(w) == [("presence", "unavailable", f"{A}/a", "room@muc.remote.test/alice")]


def test_directed_presence_targets_are_bounded(monkeypatch):
    """A session may remember only MAX_DIRECTED directed-presence recipients; one more
    is refused with <resource-constraint/> to the sender instead of growing memory,
    while presence to a target already remembered still goes out."""
    from fedxmpp.im import presence as presence_module

    monkeypatch.setattr(presence_module, "MAX_DIRECTED", 2)
    w = World()
    a = w.online(f"{A}/a")
    a.sent.clear()
    w.presence(a, to="x@remote.test/1")
    w.presence(a, to="y@remote.test/1")
    w.presence(a, to="z@remote.test/1")
    w.presence(a, to="x@remote.test/1")
    assert [to for _, _, _, to in remote_sent(w)] == ["x@remote.test/1", "y@remote.test/1", "x@remote.test/1"]
    (error,) = received(a, "presence", "error")
    assert error.getAttribute("from") == "z@remote.test/1"
    assert "resource-constraint" in error.toXml()


def test_explicit_unavailable_then_end_sends_nothing_more():
    """A resource that already said unavailable causes no second broadcast when it
    disconnects."""
    w = World()
    both(w, A, B)
    a = w.online(f"{A}/a")
    b = w.online(f"{B}/b")
    a.sent.clear()
    w.presence(b, type="unavailable")
    assert presences(a) == [(f"{B}/b", "unavailable")]
    w.end(b)
    assert presences(a) == []


def test_probe_answers():
    """§4.3.2: a subscriber's probe gets the available resources' presence, or
    unavailable if there is none; anyone else gets unsubscribed, revealing nothing."""
    w = World()
    w.storage.roster.rosters[("alice", "example.test")] = {
        "romeo@remote.test": RosterItem("romeo@remote.test", None, "from", False, False, ())}
    w.inbound("romeo@remote.test", A, "probe")
    assert remote_sent(w) == [("presence", "unavailable", A, "romeo@remote.test")]
    w.online(f"{A}/a")
    remote_sent(w)
    w.inbound("romeo@remote.test", A, "probe")
    assert remote_sent(w) == [("presence", None, f"{A}/a", "romeo@remote.test")]
    w.inbound("mallory@remote.test", A, "probe")
    assert remote_sent(w) == [("presence", "unsubscribed", A, "mallory@remote.test")]


def test_subscribe_to_a_user_that_does_not_exist():
    """§3.1.3: a request to a local address without an account is answered with
    unsubscribed."""
    w = World()
    w.inbound("romeo@remote.test", "nobody@example.test", "subscribe")
    assert remote_sent(w) == [("presence", "unsubscribed", "nobody@example.test", "romeo@remote.test")]


def test_pre_approval():
    """§3.4: alice pre-approves bob; bob's later request is answered 'subscribed'
    by the server without bothering alice, and alice's item becomes 'from'."""
    w = World()
    a = w.online(f"{A}/a")
    w.presence(a, to=B, type="subscribed")
    assert pushes(a) == [(B, "none", None)]
    assert w.item("alice", B).approved
    a.sent.clear()
    b = w.online(f"{B}/b")
    w.presence(b, to=A, type="subscribe")
    assert presences(a, "subscribe") == []
    assert w.item("alice", B).subscription == "from" and not w.item("alice", B).approved
    assert (A, "subscribed") in presences(b)
    assert w.item("bob", A).subscription == "to"


def test_subscription_to_remote_contact_goes_through_the_router():
    """Outbound subscription stanzas to other servers are stamped with the bare JID
    and routed; the remote answer updates the roster."""
    w = World()
    a = w.online(f"{A}/a")
    remote_sent(w)
    w.presence(a, to="romeo@remote.test/phone", type="subscribe")
    assert remote_sent(w) == [("presence", "subscribe", A, "romeo@remote.test")]
    a.sent.clear()
    w.inbound("romeo@remote.test", A, "subscribed")
    assert w.item("alice", "romeo@remote.test").subscription == "to"
    assert presences(a) == [("romeo@remote.test", "subscribed")]


def test_unsubscribe_takes_the_contacts_presence_away():
    """RFC 6121 §3.3.3: alice ('both' with bob) unsubscribes from bob; bob's server
    delivers the unsubscribe, pushes his roster, and sends alice unavailable from each
    of bob's available resources, so her client no longer shows him online."""
    w = World()
    both(w, A, B)
    a = w.online(f"{A}/a")
    b1 = w.online(f"{B}/b1")
    b2 = w.online(f"{B}/b2")
    for s in (a, b1, b2):
        s.sent.clear()
    w.presence(a, to=B, type="unsubscribe")
    assert pushes(a) == [(B, "from", None)]
    assert presences(b1) == presences(b2) == [(A, "unsubscribe")]
    assert pushes(b1) == pushes(b2) == [(A, "to", None)]
    assert sorted(presences(a)) == [(f"{B}/b1", "unavailable"), (f"{B}/b2", "unavailable")]
    assert w.item("alice", B).subscription == "from" and w.item("bob", A).subscription == "to"


def test_unsubscribe_from_a_remote_contact_gets_unavailable_routed_back():
    """§3.3.3 towards another server: romeo (remote, subscribed to alice's presence)
    unsubscribes; unavailable from alice's available resource is routed to him."""
    w = World()
    w.storage.roster.rosters[("alice", "example.test")] = {
        "romeo@remote.test": RosterItem("romeo@remote.test", None, "from", False, False, ())}
    w.online(f"{A}/a")
    remote_sent(w)
    w.inbound("romeo@remote.test", A, "unsubscribe")
    assert remote_sent(w) == [("presence", "unavailable", f"{A}/a", "romeo@remote.test")]
    assert w.item("alice", "romeo@remote.test").subscription == "none"


def test_priority_is_honoured():
    """<priority/> sets the resource's priority (clamped to -128..127); a missing or
    malformed one means 0."""
    w = World()
    a = w.login(f"{A}/a")
    w.presence(a, priority=300)
    assert (a.available, a.priority) == (True, 127)
    w.presence(a, priority=-5)
    assert a.priority == -5
    w.presence(a)
    assert a.priority == 0


def test_presence_waits_behind_the_users_roster_work():
    """Presence for a user whose queue is busy (the roster loading from a slow
    database) is delivered after that work, not before."""
    w = World()
    both(w, A, B)
    b = w.online(f"{B}/b")
    assert presences(b) == [(f"{B}/b", None), (A, "unavailable")]  # alice is offline
    gate: Deferred[None] = Deferred()
    store = w.storage.roster
    original = store.set_item

    async def slow_set_item(*args):
        await gate
        return await original(*args)

    store.set_item = slow_set_item
    w.inbound("romeo@remote.test", B, "subscribe")  # stuck in storage
    w.inbound("juliet@remote.test", B)  # plain presence: must wait
    assert presences(b) == []
    gate.callback(None)
    assert presences(b) == [("romeo@remote.test", "subscribe"), ("juliet@remote.test", None)]


def test_replaced_session_does_not_mark_its_successor_unavailable():
    """When a new session takes over a resource, the old one's end does not send
    unavailable for the address the new one now uses."""
    w = World()
    both(w, A, B)
    a = w.online(f"{A}/a")
    old = w.online(f"{B}/same")
    new = w.login(f"{B}/same")  # the old session is marked replaced and closed
    w.presence(new)
    a.sent.clear()
    w.end(old)
    assert presences(a) == []
    assert received(new, "presence", "unavailable") == []


def test_subscription_to_a_gateway_contact_goes_to_the_component():
    """A contact on a component's domain is subscribed to through that component's
    route, stamped with the user's bare JID; its approval comes back the same way."""
    w = World()
    gateway: list[tuple[str | None, str, str]] = []
    w.router.add_route("sms.example.test", lambda st, frm, to: gateway.append((st.getAttribute("type"),
                                                                               st["from"], st["to"])))
    a = w.online(f"{A}/a")
    a.sent.clear()
    w.presence(a, to="+15550001@sms.example.test", type="subscribe")
    assert gateway == [("subscribe", A, "+15550001@sms.example.test")]
    w.inbound("+15550001@sms.example.test", A, "subscribed")
    assert w.item("alice", "+15550001@sms.example.test").subscription == "to"
    assert pushes(a) == [("+15550001@sms.example.test", "none", "subscribe"),
                         ("+15550001@sms.example.test", "to", None)]
