"""Roster get/set/remove, pushes, versions and errors (RFC 6121 §2), and the Python API."""

from __future__ import annotations

from twisted.internet.defer import Deferred

import pytest
import pytest_twisted
from twisted.words.xish import domish

from fedxmpp.im.roster import MAX_NAME, ROSTER, RosterError
from fedxmpp.storage import RosterItem
from fedxmpp.xml.jid import JID
from tests.unit.im.world import World, pushes, received, remote_sent, stanza_error


def query(*items: domish.Element, ver: str | None = None) -> domish.Element:
    q = domish.Element((ROSTER, "query"))
    if ver is not None:
        q["ver"] = ver
    for item in items:
        q.addChild(item)
    return q


def item(jid: str, name: str | None = None, groups: tuple[str, ...] = (), subscription: str | None = None,
         **attrs: str) -> domish.Element:
    el = domish.Element((ROSTER, "item"))
    el["jid"] = jid
    if name is not None:
        el["name"] = name
    if subscription is not None:
        el["subscription"] = subscription
    for k, v in attrs.items():
        el[k] = v
    for g in groups:
        el.addElement("group", content=g)
    return el


def result_of(session) -> domish.Element:
    [iq] = received(session, "iq", "result")
    return iq


def error_of(session) -> str | None:
    [iq] = received(session, "iq", "error")
    return stanza_error(iq)


def roster_items(iq: domish.Element) -> list[tuple[str, str | None, str, tuple[str, ...]]]:
    q = next(iq.elements(ROSTER, "query"))
    return [(i["jid"], i.getAttribute("name"), i["subscription"], tuple(str(g) for g in i.elements(ROSTER, "group")))
            for i in q.elements(ROSTER, "item")]


def test_get_returns_items_and_version():
    """A roster get answers with every item, its name, groups and subscription, and
    the roster's version."""
    w = World()
    a = w.login("alice@example.test/a")
    w.client_iq(a, "set", query(item("bob@example.test", "Bob", ("Friends", "Work"))))
    result_of(a)
    w.client_iq(a, "get", query())
    iq = result_of(a)
    assert roster_items(iq) == [("bob@example.test", "Bob", "none", ("Friends", "Work"))]
    assert next(iq.elements(ROSTER, "query"))["ver"] == "1"


def test_get_with_current_version_is_an_empty_result():
    """§2.6.3: a client whose cached version is current gets an empty result; a
    stale or empty version gets the whole roster."""
    w = World()
    a = w.login("alice@example.test/a")
    w.client_iq(a, "set", query(item("bob@example.test")))
    result_of(a)
    w.client_iq(a, "get", query(ver="1"))
    assert list(result_of(a).elements()) == []
    w.client_iq(a, "get", query(ver="0"))
    assert [i[0] for i in roster_items(result_of(a))] == ["bob@example.test"]
    w.client_iq(a, "get", query(ver=""))
    assert [i[0] for i in roster_items(result_of(a))] == ["bob@example.test"]


def test_set_pushes_to_interested_resources_only():
    """§2.2: a roster set is pushed, with the new version, to every resource that
    asked for the roster — the one that made the change included — and to no other."""
    w = World()
    a1, a2, a3 = (w.login(f"alice@example.test/{r}") for r in ("one", "two", "three"))
    for s in (a1, a2):
        w.client_iq(s, "get", query())
        result_of(s)
    w.client_iq(a1, "set", query(item("bob@example.test", "Bob")))
    assert result_of(a1) is not None
    assert pushes(a1) == [("bob@example.test", "none", None)]
    assert pushes(a2) == [("bob@example.test", "none", None)]
    assert a3.sent == []


def test_set_keeps_subscription_and_ignores_client_state_attributes():
    """A roster set changes name and groups only: 'subscription' (other than remove),
    'ask' and 'approved' from the client are ignored."""
    w = World()
    w.storage.roster.rosters[("alice", "example.test")] = {
        "bob@example.test": RosterItem("bob@example.test", None, "both", False, False, ())}
    a = w.login("alice@example.test/a")
    w.client_iq(a, "set", query(item("bob@example.test", "B", subscription="none", ask="subscribe")))
    result_of(a)
    stored = w.item("alice", "bob@example.test")
    assert (stored.subscription, stored.ask, stored.name) == ("both", False, "B")


@pytest.mark.parametrize("payload,condition", [
    (query(item("bob@example.test"), item("carol@example.test")), "bad-request"),
    (query(), "bad-request"),
    (query(item("bob@example.test", groups=("g", "g"))), "bad-request"),
    (query(item("bob@example.test", groups=("",))), "not-acceptable"),
    (query(item("bob@example.test", name="x" * (MAX_NAME + 1))), "not-acceptable"),
    (query(item("bob@example.test/phone")), "bad-request"),
    (query(item("not@valid@jid")), "jid-malformed"),
    (query(item("alice@example.test")), "not-allowed"),
    (query(item("nobody@example.test", subscription="remove")), "item-not-found"),
])
def test_set_errors(payload, condition):
    """§2.3.3 and §2.5.3: malformed or unacceptable roster sets get the RFC's
    error, and change nothing."""
    w = World()
    a = w.login("alice@example.test/a")
    w.client_iq(a, "set", payload)
    assert error_of(a) == condition
    assert w.storage.roster.writes == 0


def test_another_users_roster_is_forbidden():
    """Only the account's own resources may read or change its roster."""
    w = World()
    b = w.login("bob@example.test/b")
    w.client_iq(b, "get", query(), to="alice@example.test")
    assert error_of(b) == "forbidden"
    w.client_iq(b, "set", query(item("carol@example.test")), to="alice@example.test")
    assert error_of(b) == "forbidden"


def test_roster_size_is_bounded():
    """A roster set beyond max_roster_items gets <not-allowed/>; changing an
    existing item is still possible."""
    w = World(max_roster_items=2)
    a = w.login("alice@example.test/a")
    for n in range(2):
        w.client_iq(a, "set", query(item(f"c{n}@example.test")))
        result_of(a)
    w.client_iq(a, "set", query(item("c2@example.test")))
    assert error_of(a) == "not-allowed"
    w.client_iq(a, "set", query(item("c0@example.test", "renamed")))
    result_of(a)


def test_remove_cancels_subscriptions_both_ways_and_pushes():
    """§2.5.2: removing a 'both' contact sends it unsubscribe and unsubscribed (and
    unavailable from available resources), deletes the item and pushes the removal."""
    w = World()
    w.storage.roster.rosters[("alice", "example.test")] = {
        "romeo@remote.test": RosterItem("romeo@remote.test", None, "both", False, False, ())}
    a = w.online("alice@example.test/a")
    a.sent.clear()
    remote_sent(w)
    w.client_iq(a, "set", query(item("romeo@remote.test", subscription="remove")))
    result_of(a)
    assert pushes(a) == [("romeo@remote.test", "remove", None)]
    assert remote_sent(w) == [
        ("presence", "unsubscribe", "alice@example.test", "romeo@remote.test"),
        ("presence", "unsubscribed", "alice@example.test", "romeo@remote.test"),
        ("presence", "unavailable", "alice@example.test/a", "romeo@remote.test"),
    ]
    assert w.item("alice", "romeo@remote.test") is None


def test_stream_features_advertise_versioning_and_pre_approval():
    """The bind-stage features carry <ver xmlns='urn:xmpp:features:rosterver'/> and
    <sub xmlns='urn:xmpp:features:pre-approval'/>."""
    w = World()
    features = domish.Element(("http://etherx.jabber.org/streams", "features"))
    w.hooks.fire("c2s/features", features)
    # (Stream management and the features add their own beside them.)
    assert {("urn:xmpp:features:rosterver", "ver"), ("urn:xmpp:features:pre-approval", "sub")} <= {
        (c.uri, c.name) for c in features.elements()}


@pytest_twisted.ensureDeferred
async def test_python_api_set_get_remove_with_pushes():
    """The API used by privileged components: set_item pushes to interested
    resources, get returns what the user sees, remove pushes the removal."""
    w = World()
    a = w.online("alice@example.test/a")
    a.sent.clear()
    alice, bob = JID.parse("alice@example.test"), JID.parse("bob@example.test")
    await w.im.roster.set_item(alice, bob, "Bobby", ["Pals"])
    assert pushes(a) == [("bob@example.test", "none", None)]
    version, items = await w.ctx.roster.get(alice)
    assert version == 1
    assert [(i.jid, i.name, i.groups) for i in items] == [("bob@example.test", "Bobby", ("Pals",))]
    await w.ctx.roster.remove(alice, bob)
    assert pushes(a) == [("bob@example.test", "remove", None)]
    assert (await w.ctx.roster.get(alice))[1] == []
    with pytest.raises(RosterError) as info:
        await w.ctx.roster.remove(alice, bob)
    assert info.value.condition == "item-not-found"


@pytest_twisted.ensureDeferred
async def test_api_hides_rows_that_only_hold_a_pending_request():
    """A subscription request from a stranger is remembered, but is not a roster item."""
    w = World()
    w.inbound("stranger@remote.test", "alice@example.test", "subscribe")
    assert w.item("alice", "stranger@remote.test").pending_in
    assert (await w.ctx.roster.get(JID.parse("alice@example.test")))[1] == []


def test_cache_is_dropped_with_the_last_session():
    """A user's roster is cached while they have a session, and forgotten after."""
    w = World()
    a = w.online("alice@example.test/a")
    alice = JID.parse("alice@example.test")
    assert w.im.roster.cached(alice) is not None
    w.end(a)
    assert w.im.roster.cached(alice) is None


def test_removed_account_cancels_its_subscriptions():
    """When an account is removed while its user is online, each contact is told
    as if the item had been removed: bob gets unavailable, unsubscribe and
    unsubscribed, and his item for alice drops to 'none'; alice's session is
    closed with <not-authorized/> and her account and roster are gone."""
    from fedxmpp.im.accounts import remove_account
    from tests.unit.im.world import presences

    w = World()
    for owner, contact in (("alice", "bob@example.test"), ("bob", "alice@example.test")):
        w.storage.roster.rosters.setdefault((owner, "example.test"), {})[contact] = \
            RosterItem(contact, None, "both", False, False, ())
    a = w.online("alice@example.test/a")
    b = w.online("bob@example.test/b")
    b.sent.clear()
    alice = JID.parse("alice@example.test")
    done = Deferred.fromCoroutine(remove_account(w.ctx, alice, reason="test"))
    assert done.called
    assert sorted(presences(b)) == [("alice@example.test", "unsubscribe"), ("alice@example.test", "unsubscribed"),
                                    ("alice@example.test/a", "unavailable")]
    assert w.item("bob", "alice@example.test").subscription == "none"
    assert w.im.roster.cached(alice) is None
    assert ("alice", "example.test") not in w.storage.accounts.accounts
    assert [e.condition for e in a.closed_with if e is not None] == ["not-authorized"]


def test_removed_offline_account_tells_its_contacts():
    """An account removed while its user is offline (roster not in memory) still
    has its contacts told: the roster is read from storage before it goes."""
    from fedxmpp.im.accounts import remove_account
    from tests.unit.im.world import presences

    w = World()
    for owner, contact in (("alice", "bob@example.test"), ("bob", "alice@example.test")):
        w.storage.roster.rosters.setdefault((owner, "example.test"), {})[contact] = \
            RosterItem(contact, None, "both", False, False, ())
    b = w.online("bob@example.test/b")
    b.sent.clear()
    Deferred.fromCoroutine(remove_account(w.ctx, JID.parse("alice@example.test"), reason="test"))
    assert sorted(presences(b)) == [("alice@example.test", "unsubscribe"), ("alice@example.test", "unsubscribed")]
    assert w.item("bob", "alice@example.test").subscription == "none"
