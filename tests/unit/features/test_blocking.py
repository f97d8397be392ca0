"""XEP-0191 blocking: list management and enforcement (fedxmpp.features.blocking)."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer

from fedxmpp.features.blocking import BLOCKING, BLOCKING_ERRORS, is_blocked
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.features.world import World, condition, payload, xml


def block(w: World, session, *jids: str, id: str = "b1"):
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return w.iq(session, "set", f"<block xmlns='{BLOCKING}'>{items}</block>", id=id)


def unblock(w: World, session, *jids: str, id: str = "u1"):
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return w.iq(session, "set", f"<unblock xmlns='{BLOCKING}'>{items}</unblock>", id=id)


def blocklist(w: World, session, id: str = "l1") -> list[str]:
    reply = w.iq(session, "get", f"<blocklist xmlns='{BLOCKING}'/>", id=id)
    assert payload(reply).name == "blocklist"
    return [i["jid"] for i in payload(reply).elements()]


def message(frm: str, to: str, body: str = "hi", type: str = "chat"):
    el = xml(f"<message to='{to}' type='{type}'><body>{body}</body></message>")
    el["from"] = frm
    return el


def blocked_error(el) -> bool:
    err = next(c for c in el.elements() if c.name == "error")
    return any(c.uri == BLOCKING_ERRORS and c.name == "blocked" for c in err.elements())


@pytest.mark.parametrize("item,jid,expected", [
    ("bob@evil.test/phone", "bob@evil.test/phone", True),
    ("bob@evil.test/phone", "bob@evil.test/laptop", False),
    ("bob@evil.test/phone", "bob@evil.test", False),
    ("bob@evil.test", "bob@evil.test/any", True),
    ("bob@evil.test", "bob@evil.test", True),
    ("bob@evil.test", "eve@evil.test", False),
    ("evil.test/bot", "evil.test/bot", True),
    ("evil.test/bot", "evil.test", False),
    ("evil.test/bot", "bob@evil.test/bot", False),
    ("evil.test", "anyone@evil.test/r", True),
    ("evil.test", "evil.test", True),
    ("evil.test", "muc.evil.test", True),
    ("evil.test", "notevil.test", False),
])
def test_jid_matching(item, jid, expected):
    """XEP-0191 §3.1: full, bare, domain/resource and domain items (with subdomains)."""
    assert is_blocked(frozenset({JID.parse(item)}), JID.parse(jid)) is expected


def test_block_list_and_unblock_with_pushes_to_interested_resources():
    """Block and unblock change the stored list; every resource that asked for the
    list gets a push, the others do not."""
    w = World()
    w.account("alice@example.test")
    a1, a2 = w.login("alice@example.test/one"), w.login("alice@example.test/two")
    quiet = w.login("alice@example.test/quiet")
    assert blocklist(w, a1) == [] and blocklist(w, a2) == []
    assert block(w, a1, "pest@example.test", "spam.test")["type"] == "result"
    assert blocklist(w, a1, id="l2") == ["pest@example.test", "spam.test"]
    stored = json.loads(w.storage.keyval.values[("alice", "example.test", "blocklist", "")])
    assert stored == ["pest@example.test", "spam.test"]
    pushes = [s for s in a2.sent if s.getAttribute("type") == "set"]
    assert len(pushes) == 1 and payload(pushes[0]).name == "block"
    assert [i["jid"] for i in payload(pushes[0]).elements()] == ["pest@example.test", "spam.test"]
    assert not [s for s in quiet.sent if s.getAttribute("type") == "set"]
    unblock(w, a2, "spam.test")
    assert blocklist(w, a2, id="l3") == ["pest@example.test"]
    assert payload([s for s in a1.sent if s.getAttribute("type") == "set"][-1]).name == "unblock"


def test_unblock_all():
    """An empty <unblock/> empties the list (and deletes the stored document)."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    block(w, a, "x@example.test", "y@example.test")
    unblock(w, a)
    assert blocklist(w, a) == []
    assert w.storage.keyval.values == {}


def test_block_errors():
    """No item: <bad-request/>; an invalid address: <jid-malformed/>; over the limit:
    <policy-violation/>; someone else's list: <service-unavailable/>."""
    w = World(features={"blocklist_max_items": 2})
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    assert condition(block(w, a)) == "bad-request"
    assert condition(block(w, a, "a@b@c", id="b2")) == "jid-malformed"
    assert condition(block(w, a, "x@example.test", "y@example.test", "z@example.test", id="b3")) == "policy-violation"
    b = w.login("bob@example.test/b")
    assert condition(w.iq(b, "get", f"<blocklist xmlns='{BLOCKING}'/>", to="alice@example.test")) \
        == "service-unavailable"


def test_inbound_message_from_blocked_is_refused_and_never_delivered():
    """§3.3: the blocked contact's message is answered <service-unavailable/> and the
    user never sees it; after unblocking it is delivered."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    pest = w.login("pest@example.test/p")
    block(w, a, "pest@example.test")
    before = len(a.sent)
    w.client_send(pest, message("", "alice@example.test/a"))
    w.client_send(pest, message("", "alice@example.test"))
    assert len(a.sent) == before
    assert [condition(s) for s in pest.sent] == ["service-unavailable", "service-unavailable"]
    unblock(w, a, "pest@example.test")
    w.client_send(pest, message("", "alice@example.test/a", "sorry"))
    assert str(a.sent[-1].body) == "sorry"


def test_inbound_iq_and_presence_from_blocked():
    """An iq get from a blocked address gets <service-unavailable/> (even one the
    server would answer for the user); presence is dropped without a word."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    pest = w.login("pest@example.test/p")
    block(w, a, "pest@example.test")
    before = len(a.sent)
    reply = w.iq(pest, "get", "<vCard xmlns='vcard-temp'/>", to="alice@example.test")
    assert condition(reply) == "service-unavailable"
    reply = w.iq(pest, "get", f"<query xmlns='{ns.PING}'/>", to="alice@example.test/a", id="q2")
    assert condition(reply) == "service-unavailable"
    sent_by_pest = len(pest.sent)
    w.client_send(pest, xml("<presence to='alice@example.test'/>"))
    w.client_send(pest, xml("<presence to='alice@example.test' type='subscribe'/>"))
    assert len(a.sent) == before and len(pest.sent) == sent_by_pest


def test_outbound_to_blocked_is_not_acceptable_with_blocked():
    """§3.3: what the user sends to a blocked address is not routed; the user gets
    <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/>."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    pest = w.login("pest@example.test/p")
    block(w, a, "example.test/nothing", "pest@example.test")
    w.client_send(a, message("", "pest@example.test/p", "go away"))
    assert pest.sent == []
    err = a.sent[-1]
    assert (err.name, condition(err), err["from"], err["to"]) == \
        ("message", "not-acceptable", "pest@example.test/p", "alice@example.test/a")
    assert blocked_error(err)
    reply = w.iq(a, "get", f"<query xmlns='{ns.PING}'/>", to="pest@example.test/p", id="q9")
    assert condition(reply) == "not-acceptable" and blocked_error(reply)
    # The user's own server and bare JID stay reachable.
    assert w.iq(a, "get", f"<query xmlns='{ns.PING}'/>", to="example.test", id="q10")["type"] == "result"


def test_presence_broadcast_skips_blocked_contact():
    """Presence the server sends on the user's behalf to a blocked local contact is
    dropped, silently for both."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    pest = w.login("pest@example.test/p")
    friend = w.login("friend@example.test/f")
    block(w, a, "pest@example.test")
    for to in ("pest@example.test", "friend@example.test"):
        p = xml(f"<presence to='{to}'/>")
        p["from"] = "alice@example.test/a"
        w.route(p)
    assert [s.name for s in friend.sent] == ["presence"]
    assert pest.sent == []


def test_presence_broadcast_to_blocked_remote_contact_is_not_sent():
    """The user's presence broadcast reaches a remote subscriber but not a remote
    subscriber the user blocked: the check also covers federation, not only local
    delivery."""
    w = World()
    w.account("alice@example.test")
    w.subscribe("alice@example.test", "pal@remote.test", "from")
    w.subscribe("alice@example.test", "pest@remote.test", "from")
    remote_sent: list = []
    w.router.set_default(lambda st, frm, to: remote_sent.append(st))
    a = w.login("alice@example.test/a")
    block(w, a, "pest@remote.test")
    remote_sent.clear()
    w.client_send(a, xml("<presence/>"))
    remote_presence = [(st.getAttribute("type"), st["to"]) for st in remote_sent if st.name == "presence"]
    assert (None, "pal@remote.test") in remote_presence
    assert all(to != "pest@remote.test" for _, to in remote_presence)


def test_blocking_a_watcher_sends_unavailable_and_unblocking_sends_presence():
    """§3.3/§3.4: a contact with a 'from' subscription gets unavailable presence on
    block and presence again on unblock; a contact without one gets neither."""
    w = World()
    w.account("alice@example.test")
    w.subscribe("alice@example.test", "watcher@example.test", "from")
    w.subscribe("alice@example.test", "other@example.test", "to")
    a = w.login("alice@example.test/a")
    watcher = w.login("watcher@example.test/w")
    other = w.login("other@example.test/o")
    block(w, a, "watcher@example.test", "other@example.test")
    assert [(s.name, s.getAttribute("type"), s["from"]) for s in watcher.sent] == \
        [("presence", "unavailable", "alice@example.test/a")]
    unblock(w, a, "watcher@example.test")
    assert [(s.name, s.getAttribute("type")) for s in watcher.sent[1:]] == [("presence", None)]
    assert other.sent == []


class SlowKeyVal:
    """A keyval store whose reads wait until the test releases them."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate: defer.Deferred[None] = defer.Deferred()
        self.reads = 0

    async def get(self, *args):
        self.reads += 1
        await self.gate
        return await self.inner.get(*args)

    async def set(self, *args):
        return await self.inner.set(*args)

    async def list_keys(self, *args):
        return await self.inner.list_keys(*args)


def test_stanzas_wait_for_the_list_and_keep_their_order():
    """A stanza for a user whose list is not in memory waits for it to be read (one
    read for all of them), then is delivered or refused, in order."""
    w = World()
    w.storage.keyval.values[("alice", "example.test", "blocklist", "")] = b'["pest@example.test"]'
    slow = SlowKeyVal(w.storage.keyval)
    w.storage.keyval = slow
    a = w.login("alice@example.test/a")
    friend, pest = w.login("friend@example.test/f"), w.login("pest@example.test/p")
    w.client_send(friend, message("", "alice@example.test/a", "one"))
    w.client_send(pest, message("", "alice@example.test/a", "spam"))
    w.client_send(friend, message("", "alice@example.test/a", "two"))
    assert a.sent == [] and pest.sent == []
    slow.gate.callback(None)
    assert [str(m.body) for m in a.sent] == ["one", "two"]
    assert [condition(m) for m in pest.sent] == ["service-unavailable"]
    assert slow.reads == 3  # one per user, however many stanzas waited for it


def test_list_read_failure_answers_internal_server_error():
    """If the list cannot be read, waiting stanzas are answered with an error, never
    delivered unchecked or kept forever."""
    w = World()

    class Broken:
        async def get(self, *args):
            raise RuntimeError("database gone")

    w.storage.keyval = Broken()
    friend = w.login("friend@example.test/f")
    a = w.login("alice@example.test/a")
    w.client_send(friend, message("", "alice@example.test/a"))
    assert a.sent == []
    assert condition(friend.sent[-1]) == "internal-server-error"


def test_removed_account_forgets_cached_list():
    """After "account/removed" a new account with the same name starts unblocked."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    block(w, a, "pest@example.test")
    w.storage.keyval.values.clear()
    w.hooks.fire("account/removed", JID.parse("alice@example.test"))
    assert blocklist(w, a) == []
