"""A server for feature tests: the whole server as ``app.build`` composes it
(router, sessions, local delivery, the IM core and every feature in
``ENABLED``), on in-memory storage and a fake clock."""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.words.xish import domish

from fedxmpp import config
from fedxmpp.features._shared import element_from_bytes
from fedxmpp.storage import RosterItem
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.fakes import NOW, FakeSession, build_server
from tests.unit.storage.fakes import MemoryStorage

DOMAINS = ("example.test", "other.test")


def xml(text: str) -> domish.Element:
    """An element from XML text (default namespace jabber:client unless given)."""
    if " xmlns=" not in text.split(">", 1)[0]:
        name_end = min(i for i in (text.find(" "), text.find(">"), text.find("/")) if i > 0)
        text = text[:name_end] + f" xmlns='{ns.CLIENT}'" + text[name_end:]
    return element_from_bytes(text.encode())


class World:
    """The whole server (``app.build``) on fakes; *sections* replace config
    values (``archive={"default_prefs": "never"}``).  ``storage=False`` builds it
    before storage is open, as the server is between build and start."""

    def __init__(self, *, storage: bool = True, **sections: dict[str, Any]) -> None:
        cfg = config.load(None)
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, domains=DOMAINS))
        for name, values in sections.items():
            cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)})
        self.config = cfg
        self.storage = MemoryStorage() if storage else None
        self.server = build_server(cfg, storage=self.storage)
        self.clock = self.server.reactor
        self.hooks = self.server.hooks
        self.router = self.server.router
        self.sessions = self.server.sessions
        self.ctx = self.server.features
        self.im = self.server.im

    # -- people ------------------------------------------------------------------------

    def account(self, jid: str, password: str = "secret-password") -> None:
        j = JID.parse(jid)
        self.storage.accounts.accounts[(j.user, j.host)] = {}

    def subscribe(self, user: str, contact: str, subscription: str) -> None:
        """Put *contact* in *user*'s roster with *subscription*."""
        u = JID.parse(user)
        self.storage.roster.rosters.setdefault((u.user, u.host), {})[contact] = RosterItem(
            jid=contact, name=None, subscription=subscription, ask=False, pending_in=False, groups=())

    def login(self, jid: str, **kw: Any) -> FakeSession:
        s = FakeSession(jid, **kw)
        self.sessions.bind(s, s.requested)
        self.hooks.fire("c2s/session-bound", s)
        return s

    def logout(self, s: FakeSession) -> None:
        self.sessions.unbind(s)
        self.hooks.fire("c2s/session-ended", s)

    # -- stanzas -------------------------------------------------------------------------

    def route(self, el: domish.Element) -> None:
        """Route as if a server-side component or session had sent *el*."""
        self.router.route(el, JID.parse(el["from"]), JID.parse(el["to"]))

    def client_send(self, session: FakeSession, el: domish.Element) -> None:
        """What ClientSession does with a stanza from its client: stamp 'from',
        default 'to' to the bare JID, route it through the sender's side
        (ClientOutbound, the C2S router in app.py)."""
        el["from"] = session.address.full()
        to = JID.parse(el["to"]) if el.getAttribute("to") else session.bare
        self.im.outbound.route(el, session.address, to)

    def iq(self, session: FakeSession, type: str, payload: str, to: str | None = None,
           id: str = "q1") -> domish.Element:
        """Send an iq with *payload* (XML text) from *session*; its reply (the last
        iq with that id the session got)."""
        el = domish.Element((ns.CLIENT, "iq"))
        el["type"] = type
        el["id"] = id
        if to is not None:
            el["to"] = to
        el.addChild(xml(payload))
        before = len(session.sent)
        self.client_send(session, el)
        replies = [s for s in session.sent[before:] if s.name == "iq" and s.getAttribute("id") == id]
        assert replies, f"no reply to {id}; got {[s.toXml() for s in session.sent[before:]]}"
        return replies[-1]


def condition(el: domish.Element) -> str | None:
    """The defined condition of an error stanza, None if it is not one."""
    if el.getAttribute("type") != "error":
        return None
    for c in el.elements():
        if c.name == "error":
            return next(x.name for x in c.elements() if x.uri == ns.STANZA_ERRORS)
    return "(none)"


def payload(el: domish.Element) -> domish.Element | None:
    for c in el.elements():
        return c
    return None
