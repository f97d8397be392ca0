"""The router, the session table and local delivery underneath the IM core."""

from __future__ import annotations

from twisted.internet.task import Clock

from fedxmpp import config, features
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import Disco, ServerContext
from fedxmpp.im.delivery import LocalDelivery
from fedxmpp.im.sessions import SessionManager
from fedxmpp.router import Router
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.fakes import FakeSession, stanza


class World:
    """Delivery's own RFC 6121 §8 rules, deliberately without the IM core that
    app.build installs on them: there, presence decides who is available and
    offline storage takes what nobody available can receive, so these
    fallbacks (full JID gone, nobody available, unhandled iq) could not be
    seen.  The whole server's behaviour is tested through tests/unit/im/world.py."""

    def __init__(self) -> None:
        self.hooks = Hooks()
        self.router = Router(["example.test"])
        self.sessions = SessionManager()
        self.router.set_local(LocalDelivery(self.hooks, self.sessions, self.router))
        ctx = ServerContext(config=config.load(None), hooks=self.hooks, router=self.router,
                            sessions=self.sessions, clock=Clock(), disco=Disco())
        for feature in features.ENABLED:
            feature.register(self.hooks, ctx)

    def login(self, jid: str, **kw) -> FakeSession:
        s = FakeSession(jid, **kw)
        self.sessions.bind(s, s.requested)
        return s

    def send(self, el) -> None:
        self.router.route(el, JID.parse(el["from"]), JID.parse(el["to"]))


def errors(session: FakeSession) -> list[str]:
    out = []
    for el in session.sent:
        if el.getAttribute("type") == "error":
            err = next(c for c in el.elements() if c.name == "error")
            out.append(next(c.name for c in err.elements() if c.uri == ns.STANZA_ERRORS))
    return out


def test_message_to_full_jid_reaches_that_resource_only():
    """A message to a full JID goes to that session and no other resource."""
    w = World()
    a = w.login("alice@example.test/a")
    b1, b2 = w.login("bob@example.test/one"), w.login("bob@example.test/two")
    w.send(stanza("message", "alice@example.test/a", "bob@example.test/two", "chat"))
    assert [len(b1.sent), len(b2.sent), len(a.sent)] == [0, 1, 0]


def test_bare_jid_message_goes_to_highest_priority():
    """RFC 6121 §8.5.2.1.1: normal messages to the bare JID go to the highest
    non-negative priority resource; negative priority never gets them."""
    w = World()
    w.login("alice@example.test/a")
    low = w.login("bob@example.test/low", priority=1)
    high = w.login("bob@example.test/high", priority=5)
    neg = w.login("bob@example.test/neg", priority=-1)
    w.send(stanza("message", "alice@example.test/a", "bob@example.test", "normal"))
    assert [len(low.sent), len(high.sent), len(neg.sent)] == [0, 1, 0]


def test_chat_to_bare_jid_reaches_all_top_priority_resources():
    """Chat messages to the bare JID go to every resource sharing the top priority."""
    w = World()
    w.login("alice@example.test/a")
    r1, r2 = w.login("bob@example.test/1", priority=2), w.login("bob@example.test/2", priority=2)
    w.send(stanza("message", "alice@example.test/a", "bob@example.test", "chat"))
    assert [len(r1.sent), len(r2.sent)] == [1, 1]


def test_message_to_unavailable_user_bounces_service_unavailable():
    """With nobody available the sender gets <service-unavailable/>, not silence."""
    w = World()
    a = w.login("alice@example.test/a")
    w.login("bob@example.test/hidden", available=False)
    w.send(stanza("message", "alice@example.test/a", "bob@example.test", "chat"))
    assert errors(a) == ["service-unavailable"]


def test_unknown_full_jid_falls_back_to_bare_rules():
    """RFC 6121 §8.5.3.2.1: a chat to a resource that is gone goes to the bare JID."""
    w = World()
    w.login("alice@example.test/a")
    b = w.login("bob@example.test/phone")
    w.send(stanza("message", "alice@example.test/a", "bob@example.test/laptop", "chat"))
    assert len(b.sent) == 1


def test_unhandled_iq_gets_service_unavailable():
    """An iq request to the server that no feature handles is answered with an error."""
    w = World()
    a = w.login("alice@example.test/a")
    w.send(stanza("iq", "alice@example.test/a", "example.test", "get", payload_ns="urn:example:nothing"))
    assert errors(a) == ["service-unavailable"]
    assert a.sent[0]["id"] == "s1"


def test_iq_to_missing_resource_gets_service_unavailable():
    """An iq to an offline full JID is answered, never dropped."""
    w = World()
    a = w.login("alice@example.test/a")
    w.send(stanza("iq", "alice@example.test/a", "bob@example.test/x", "get", payload_ns="jabber:iq:version"))
    assert errors(a) == ["service-unavailable"]


def test_ping_to_server_is_answered():
    """XEP-0199: the server answers a ping with an empty result from its domain."""
    w = World()
    a = w.login("alice@example.test/a")
    w.send(stanza("iq", "alice@example.test/a", "example.test", "get", payload_ns=ns.PING))
    (reply,) = a.sent
    assert (reply["type"], reply["from"], reply["id"]) == ("result", "example.test", "s1")


def test_error_is_never_answered_with_error():
    """A bounced error stanza is not bounced again (no loops)."""
    w = World()
    a = w.login("alice@example.test/a")
    w.send(stanza("message", "alice@example.test/a", "nobody@example.test", "error"))
    assert a.sent == []


def test_remote_domain_without_route_bounces():
    """Until federation registers a default route, a remote domain gets remote-server-not-found."""
    w = World()
    a = w.login("alice@example.test/a")
    w.send(stanza("message", "alice@example.test/a", "bob@elsewhere.test", "chat"))
    assert errors(a) == ["remote-server-not-found"]


def test_registered_route_receives_its_domain():
    """A service that owns a domain (a component) gets its stanzas through the router."""
    w = World()
    got = []
    w.router.add_route("irc.example.test", lambda el, frm, to: got.append((el, frm, to)))
    w.login("alice@example.test/a")
    w.send(stanza("message", "alice@example.test/a", "#chan@irc.example.test", "groupchat"))
    assert got and got[0][2] == JID.parse("#chan@irc.example.test")
    w.router.remove_route("irc.example.test")
    assert not w.router.has_route("irc.example.test")


def test_resource_conflict_newest_wins():
    """RFC 6120 §7.7.2.2: the old session gets <conflict/>, the new one owns the resource."""
    w = World()
    old = w.login("alice@example.test/desk")
    new = w.login("alice@example.test/desk")
    assert [e.condition for e in old.closed_with] == ["conflict"]
    assert w.sessions.get(JID.parse("alice@example.test/desk")) is new
    w.sessions.unbind(old)  # the old stream's close must not evict the new session
    assert w.sessions.get(JID.parse("alice@example.test/desk")) is new
    assert w.sessions.count == 1


def test_generated_resources_are_unique():
    """A client that asks for no resource gets a fresh one each time."""
    w = World()
    s1, s2 = FakeSession("a@example.test"), FakeSession("a@example.test")
    j1, j2 = w.sessions.bind(s1, None), w.sessions.bind(s2, None)
    assert j1 != j2 and j1.resource and j2.resource


def test_a_service_route_says_when_its_stanza_is_settled():
    """An in-process service (MUC) that keeps a stanza returns a Deferred for its
    commit, and route() passes it on so the sender's ack waits for it; a route
    that returns anything else (a stream's send) is settled at once."""
    from twisted.internet.defer import Deferred

    router = Router(["example.test"])
    committed: Deferred[None] = Deferred()
    router.add_route("conference.example.test", lambda st, frm, to: committed)
    router.add_route("irc.example.test", lambda st, frm, to: True)
    msg = stanza("message", "alice@example.test/a", "room@conference.example.test", type="groupchat")
    frm = JID.parse("alice@example.test/a")
    assert router.route(msg, frm, JID.parse("room@conference.example.test")) is committed
    assert router.route(msg, frm, JID.parse("#c@irc.example.test")) is None
