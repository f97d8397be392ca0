"""XEP-0356 privileged entity: the advertisement, and the message and roster permissions."""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from fedxmpp.component.privilege import PRIVILEGE, advertisement
from fedxmpp.storage import NoSuchAccount, RosterItem
from fedxmpp.xml.jid import JID
from tests.unit.component.world import World, component, stanza_error

ROSTER = "jabber:iq:roster"


class FakeRoster:
    """The roster service's API (fedxmpp.im.roster.Roster), recording the calls."""

    def __init__(self, items: list[RosterItem] | None = None, fail: Exception | None = None) -> None:
        self.items = items or []
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    async def get(self, owner: JID) -> tuple[int, list[RosterItem]]:
        self.calls.append(("get", owner))
        if self.fail:
            raise self.fail
        return 7, self.items

    async def set_item(self, owner: JID, contact: JID, name: str | None, groups: Any) -> None:
        self.calls.append(("set", owner, contact, name, tuple(groups)))
        if self.fail:
            raise self.fail

    async def remove(self, owner: JID, contact: JID) -> None:
        self.calls.append(("remove", owner, contact))


class RosterRefusal(Exception):
    """Shaped like fedxmpp.im.roster.RosterError."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(condition)
        self.condition, self.text = condition, text


def _item(jid: str, **kw: Any) -> RosterItem:
    base = dict(name=None, subscription="none", ask=False, pending_in=False, groups=())
    return RosterItem(jid=jid, **{**base, **kw})


def _wrapped(inner_from: str, inner_to: str = "bob@example.test/b", outer_to: str = "example.test") -> str:
    return (f"<message from='gw.example.test' to='{outer_to}' id='w1'><privilege xmlns='{PRIVILEGE}'>"
            f"<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='{inner_from}' "
            f"to='{inner_to}' type='chat' id='in1'><body>from the gateway</body></message></forwarded>"
            f"</privilege></message>")


def _privileged(**privileges: str) -> World:
    return World(component("gw.example.test", privileges=privileges), roster=FakeRoster())


def test_advertisement_names_the_granted_privileges_once_per_hosted_domain():
    """After the handshake a component with privileges gets one urn:xmpp:privilege:2
    message from each hosted domain with a <perm/> per granted access; a component
    without privileges gets none."""
    w = _privileged(roster="both", message="outgoing")
    peer = w.connect()
    peer.handshake()
    out = peer.take()
    assert out.startswith("<handshake/>")
    adverts = peer.elements(out[len("<handshake/>"):])
    assert [(m["from"], m["to"]) for m in adverts] == [("example.test", "gw.example.test"),
                                                       ("other.test", "gw.example.test")]
    privilege = next(adverts[0].elements())
    assert privilege.uri == PRIVILEGE
    assert [(p["access"], p["type"]) for p in privilege.elements()] == [("roster", "both"), ("message", "outgoing")]
    assert list(advertisement(component("x.test"), ("example.test",))) == []


def test_privileged_message_is_delivered_as_the_user():
    """With message = "outgoing" the forwarded message is routed as if alice had sent
    it: bob receives it from alice's bare JID, with its payload."""
    w = _privileged(message="outgoing")
    bob = w.login("bob@example.test/b")
    peer = w.attach()
    peer.take()
    peer.feed(_wrapped("alice@example.test"))
    [msg] = bob.sent
    assert (msg.name, msg["from"], msg["to"], msg["id"]) == ("message", "alice@example.test", "bob@example.test/b",
                                                             "in1")
    assert str(next(msg.elements())) == "from the gateway"
    assert peer.take() == ""


def test_privileged_message_may_come_from_the_server_itself():
    """The XEP also allows the server's own address as the forwarded 'from'."""
    w = _privileged(message="outgoing")
    bob = w.login("bob@example.test/b")
    peer = w.attach()
    peer.take()
    peer.feed(_wrapped("example.test"))
    assert [m["from"] for m in bob.sent] == ["example.test"]


def test_privileged_message_rules():
    """Forbidden: a forwarded 'from' with a resource, at another domain than the one
    the wrapper is addressed to, or at a non-hosted domain; and any wrapper from a
    component without the privilege.  Nothing is delivered in either case."""
    cases = [("outgoing", _wrapped("alice@example.test/phone")),
             ("outgoing", _wrapped("alice@other.test")),
             ("outgoing", _wrapped("mallory@remote.test", outer_to="example.test")),
             ("none", _wrapped("alice@example.test"))]
    for message, xml in cases:
        w = _privileged(message=message)
        bob = w.login("bob@example.test/b")
        peer = w.attach()
        peer.take()
        peer.feed(xml)
        [error] = peer.elements()
        assert stanza_error(error) == "forbidden" and error["to"] == "gw.example.test", xml
        assert bob.sent == []


def test_privilege_wrapper_from_a_user_is_forbidden():
    """A client cannot use the wrapper to speak for another user."""
    w = _privileged(message="outgoing")
    mallory = w.login("mallory@example.test/m")
    bob = w.login("bob@example.test/b")
    wrapper = domish.Element(("jabber:client", "message"))
    wrapper["from"], wrapper["to"] = "mallory@example.test/m", "example.test"
    fwd = wrapper.addElement((PRIVILEGE, "privilege")).addElement(("urn:xmpp:forward:0", "forwarded"))
    inner = fwd.addElement(("jabber:client", "message"))
    inner["from"], inner["to"] = "alice@example.test", "bob@example.test/b"
    w.route(wrapper)
    assert [stanza_error(e) for e in mallory.sent] == ["forbidden"] and bob.sent == []


def test_wrapper_without_forwarded_message_is_bad_request():
    """A privilege wrapper must carry <forwarded/> with a message inside."""
    w = _privileged(message="outgoing")
    peer = w.attach()
    peer.take()
    peer.feed(f"<message from='gw.example.test' to='example.test'><privilege xmlns='{PRIVILEGE}'/></message>")
    [error] = peer.elements()
    assert stanza_error(error) == "bad-request"


def test_roster_get_for_a_user():
    """With roster = "get" (or "both") an iq get to a user's bare JID is answered from
    the roster service: version, items with name, subscription, ask and groups, and
    without the hidden rows."""
    w = _privileged(roster="get")
    w.roster.items = [_item("romeo@remote.test", name="Romeo", subscription="both", groups=("Friends",)),
                      _item("x@gw.example.test", ask=True), _item("hidden@remote.test", hidden=True)]
    peer = w.attach()
    peer.take()
    peer.feed(f"<iq type='get' id='r1' from='gw.example.test' to='alice@example.test'><query xmlns='{ROSTER}'/></iq>")
    [result] = peer.elements()
    assert (result["type"], result["id"], result["from"]) == ("result", "r1", "alice@example.test")
    query = next(result.elements())
    assert query.uri == ROSTER and query["ver"] == "7"
    items = [(i["jid"], i.getAttribute("name"), i["subscription"], i.getAttribute("ask"),
              [str(g) for g in i.elements()]) for i in query.elements()]
    assert items == [("romeo@remote.test", "Romeo", "both", None, ["Friends"]),
                     ("x@gw.example.test", None, "none", "subscribe", [])]
    assert w.roster.calls == [("get", JID.parse("alice@example.test"))]


def test_roster_set_applies_every_item_in_order():
    """With roster = "set" (or "both") a set may carry several items (slixmpp sends
    them at once): each becomes set_item or remove, then one empty result."""
    w = _privileged(roster="both")
    peer = w.attach()
    peer.take()
    peer.feed(f"<iq type='set' id='s1' from='gw.example.test' to='alice@example.test'><query xmlns='{ROSTER}'>"
              "<item jid='+1555@gw.example.test' name='Mum' subscription='both'><group>SMS</group></item>"
              "<item jid='old@gw.example.test' subscription='remove'/></query></iq>")
    [result] = peer.elements()
    assert result["type"] == "result" and list(result.elements()) == []
    alice = JID.parse("alice@example.test")
    assert w.roster.calls == [("set", alice, JID.parse("+1555@gw.example.test"), "Mum", ("SMS",)),
                              ("remove", alice, JID.parse("old@gw.example.test"))]


def test_roster_operations_outside_the_grant_are_forbidden():
    """get-only may not set, set-only may not get, none may do neither; the roster
    service is not called."""
    for granted, kind in (("get", "set"), ("set", "get"), ("none", "get")):
        w = _privileged(roster=granted)
        peer = w.attach()
        peer.take()
        item = "<item jid='a@gw.example.test'/>" if kind == "set" else ""
        peer.feed(f"<iq type='{kind}' id='x' from='gw.example.test' to='alice@example.test'>"
                  f"<query xmlns='{ROSTER}'>{item}</query></iq>")
        [error] = peer.elements()
        assert stanza_error(error) == "forbidden", (granted, kind)
        assert w.roster.calls == []


def test_roster_refusals_and_failures_are_answered():
    """The roster service's refusal becomes its stanza error, a missing account
    service-unavailable, anything else internal-server-error: never silence."""
    for fail, condition in ((RosterRefusal("not-acceptable", "too long"), "not-acceptable"),
                            (NoSuchAccount("alice", "example.test"), "service-unavailable"),
                            (RuntimeError("disk on fire"), "internal-server-error")):
        w = _privileged(roster="both")
        w.roster.fail = fail
        peer = w.attach()
        peer.take()
        peer.feed(f"<iq type='set' id='s' from='gw.example.test' to='alice@example.test'><query xmlns='{ROSTER}'>"
                  "<item jid='a@gw.example.test'/></query></iq>")
        [error] = peer.elements()
        assert stanza_error(error) == condition, fail


def test_roster_without_roster_service_is_service_unavailable():
    """A privileged roster request on a server without a roster service is answered
    with <service-unavailable/>, not left waiting."""
    w = _privileged(roster="both")
    w.roster = None
    peer = w.attach()
    peer.take()
    peer.feed(f"<iq type='get' id='g' from='gw.example.test' to='alice@example.test'><query xmlns='{ROSTER}'/></iq>")
    [error] = peer.elements()
    assert stanza_error(error) == "service-unavailable"


def test_roster_requests_from_others_are_left_to_the_roster_feature():
    """A roster iq that does not come from a connected component's own address (a user,
    or an address at the component's domain) is not handled here."""
    w = _privileged(roster="both")
    peer = w.attach()
    peer.take()
    # (The privilege handler declines; the whole server's roster feature then answers.)
    privileges = w.components.privileges
    assert not privileges.roster_get(_Event("alice@example.test/a", "alice@example.test"))
    assert not privileges.roster_get(_Event("bot@gw.example.test", "alice@example.test"))
    assert w.roster.calls == []


class _Event:
    def __init__(self, frm: str, to: str) -> None:
        self.stanza = domish.Element(("jabber:client", "iq"))
        self.frm, self.to = JID.parse(frm), JID.parse(to)

