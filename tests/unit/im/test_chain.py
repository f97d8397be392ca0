"""The delivery chain that can wait (fedxmpp.hooks.run, fedxmpp.im.delivery): order
per recipient, one route per hop, policies that fail closed, and the outcome a
route gives for when its stanza is settled."""

from __future__ import annotations

from twisted.internet import defer

from fedxmpp.features import mam
from tests.unit.features.test_blocking import SlowKeyVal, message
from tests.unit.features.world import World, condition, xml

A, B, C = "alice@example.test", "bob@example.test", "carol@example.test"


def bodies(session) -> list[str]:
    return [str(m.body) for m in session.sent if m.name == "message" and m.getAttribute("type") != "error"]


def world() -> World:
    w = World()
    for user in (A, B, C):
        w.account(user)
    return w


def test_a_waiting_handler_holds_its_recipient_only_and_keeps_order():
    """A handler that returns an awaitable holds the chain of that recipient: later
    stanzas for the same user wait behind it, in order; another user's pass at once."""
    w = world()
    a, b, c = w.login(f"{A}/a"), w.login(f"{B}/b"), w.login(f"{C}/c")
    gate: defer.Deferred[bool] = defer.Deferred()
    waits = [gate]

    def first_one_waits(event):
        return waits.pop() if waits and event.to.bare.user == "bob" else False

    w.hooks.add("message/full", first_one_waits, 1000)
    w.client_send(a, message("", f"{B}/b", "one"))
    w.client_send(a, message("", f"{B}/b", "two"))
    w.client_send(a, message("", f"{C}/c", "to carol"))
    assert bodies(b) == [] and bodies(c) == ["to carol"]
    gate.callback(False)
    assert bodies(b) == ["one", "two"]
    assert w.router.routed == 3


def test_a_cold_blocklist_costs_no_second_route():
    """A stanza that waits for the recipient's blocklist is routed once: the chain
    goes on when the list is read, instead of the stanza being routed again."""
    w = world()
    slow = SlowKeyVal(w.storage.keyval)
    w.storage.keyval = slow
    friend = w.login(f"{C}/f")
    a = w.login(f"{A}/a")
    routed = w.router.routed
    for body in ("one", "two", "three"):
        w.client_send(friend, message("", f"{A}/a", body))
    slow.gate.callback(None)
    assert bodies(a) == ["one", "two", "three"]
    assert w.router.routed - routed == 3


def test_cold_archive_preferences_cost_no_second_route():
    """A message waiting for the recipient's archive preferences is routed once."""
    w = world()
    gate: defer.Deferred[None] = defer.Deferred()
    real = w.storage.archive.get_prefs

    async def slow(user, domain):
        await gate
        return await real(user, domain)

    w.storage.archive.get_prefs = slow
    b = w.login(f"{B}/b")
    a = w.login(f"{A}/a")
    routed = w.router.routed
    for body in ("one", "two"):
        w.client_send(b, message("", f"{A}/a", body))
    gate.callback(None)
    assert bodies(a) == ["one", "two"]
    assert w.router.routed - routed == 2


def test_a_policy_that_raises_refuses_the_stanza():
    """A policy step (blocking) that raises refuses the stanza with
    <internal-server-error/>; nothing after it sees the stanza, nothing is delivered."""
    w = world()
    a, b = w.login(f"{A}/a"), w.login(f"{B}/b")

    def broken(event):
        if event.to.bare.user == "bob":
            raise RuntimeError("policy store on fire")
        return False

    w.hooks.add("message/full", broken, step="blocking")
    w.client_send(a, message("", f"{B}/b", "secret"))
    assert bodies(b) == []
    assert [condition(m) for m in a.sent] == ["internal-server-error"]


def test_a_policy_whose_awaitable_fails_refuses_the_stanza():
    """The same when the policy fails after waiting, on the delivery side and on the
    sender's side (pre- events), where the sender's own session gets the error."""
    w = world()
    a, b = w.login(f"{A}/a"), w.login(f"{B}/b")
    inbound: defer.Deferred[bool] = defer.Deferred()
    outbound: defer.Deferred[bool] = defer.Deferred()
    w.hooks.add("message/full", lambda e: inbound if e.to.bare.user == "bob" else False, step="blocking")
    w.hooks.add("pre-message/full", lambda e: outbound if e.to.bare.user == "alice" else False,
                step="blocking")
    w.client_send(a, message("", f"{B}/b", "in"))
    w.client_send(b, message("", f"{A}/a", "out"))
    inbound.errback(RuntimeError("cannot read"))
    outbound.errback(RuntimeError("cannot read"))
    assert bodies(a) == [] and bodies(b) == []
    assert [condition(m) for m in a.sent] == ["internal-server-error"]
    assert [condition(m) for m in b.sent] == ["internal-server-error"]


def test_a_feature_that_raises_is_logged_and_the_chain_goes_on():
    """A feature step that raises does not stop delivery (today's behaviour kept)."""
    w = world()
    a, b = w.login(f"{A}/a"), w.login(f"{B}/b")

    def broken(event):
        raise RuntimeError("feature bug")

    w.hooks.add("message/full", broken, step="carbons")
    w.client_send(a, message("", f"{B}/b", "still here"))
    assert bodies(b) == ["still here"]


def test_route_settles_when_the_archive_row_commits():
    """Routing a message between two online users gives an outcome that fires only
    when the archive batch holding its rows has been committed."""
    w = world()
    a, b = w.login(f"{A}/a"), w.login(f"{B}/b")
    gate: defer.Deferred[None] = defer.Deferred()
    real = w.storage.archive.add

    async def slow_add(entries):
        await gate
        return await real(entries)

    w.storage.archive.add = slow_add
    done = []
    outcome = w.im.outbound.route(_stamped(message("", f"{B}/b", "keep me"), a), a.address, b.address)
    assert outcome is not None
    outcome.addCallback(done.append)
    assert bodies(b) == ["keep me"]  # delivery does not wait
    w.clock.advance(mam.FLUSH_DELAY)
    assert done == []
    gate.callback(None)
    assert done == [None]


def test_route_settles_when_the_offline_row_commits():
    """A message for a user with no available resource is settled once stored."""
    w = world()
    a = w.login(f"{A}/a")
    gate: defer.Deferred[None] = defer.Deferred()
    real = w.storage.offline.store

    async def slow_store(*args):
        await gate
        return await real(*args)

    w.storage.offline.store = slow_store
    done = []
    bob = a.address.__class__.parse(B)
    w.im.outbound.route(_stamped(message("", B, "later"), a), a.address, bob).addCallback(done.append)
    w.clock.advance(1)  # the archive batch commits; the offline row does not yet
    assert done == []
    gate.callback(None)
    assert done == [None] and len(w.storage.offline.messages[("bob", "example.test")]) == 1


def test_nothing_to_wait_for_settles_at_once():
    """Presence to an online user, with nothing stored, is settled at once: None."""
    w = world()
    a, b = w.login(f"{A}/a"), w.login(f"{B}/b")
    presence = xml(f"<presence to='{B}/b'/>")
    presence["from"] = a.address.full()
    assert w.router.route(presence, a.address, b.address) is None


def _stamped(el, session):
    el["from"] = session.address.full()
    return el


def test_a_recipient_with_too_many_stanzas_waiting_refuses_more(monkeypatch):
    """The queue of stanzas waiting behind a recipient's chain is bounded: past
    MAX_WAITING the next stanza is answered with <resource-constraint/>."""
    from fedxmpp.im import delivery

    monkeypatch.setattr(delivery, "MAX_WAITING", 2)
    w = world()
    a, b = w.login(f"{A}/a"), w.login(f"{B}/b")
    gate: defer.Deferred[bool] = defer.Deferred()
    waits = [gate]
    w.hooks.add("message/full", lambda e: waits.pop() if waits and e.to.bare.user == "bob" else False, 1000)
    for body in ("one", "two", "three"):
        w.client_send(a, message("", f"{B}/b", body))
    assert [condition(m) for m in a.sent] == ["resource-constraint"]
    gate.callback(False)
    assert bodies(b) == ["one", "two"]
