"""A server's IM core on fakes: router, delivery, roster, presence, offline, in
the whole server as ``app.build`` composes it.

Memory stores complete at once, so everything a stanza sets off has happened when
``send`` returns, unless a test slows a store down on purpose.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.words.xish import domish

from fedxmpp import config
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.fakes import FakeSession, build_server
from tests.unit.storage.fakes import MemoryStorage

DOMAIN = "example.test"


class World:
    """The whole server (``app.build``) on fakes, seen through its IM core, with
    federation replaced by a recorder (:attr:`remote`).  The message archive
    archives nothing unless told (*archive* is its ``default_prefs``), so that a
    message's fate here is the IM core's alone."""

    def __init__(self, users: tuple[str, ...] = ("alice", "bob", "carol"), *, offline_quota: int = 1000,
                 max_roster_items: int = 1000, archive: str = "never") -> None:
        cfg = config.load(None)
        cfg = replace(cfg, server=replace(cfg.server, domains=(DOMAIN,)),
                      im=replace(cfg.im, offline_quota=offline_quota, max_roster_items=max_roster_items),
                      archive=replace(cfg.archive, default_prefs=archive))
        self.config = cfg
        self.storage = MemoryStorage()
        for user in users:
            self.storage.accounts.put(user, DOMAIN, {})
        self.server = build_server(cfg, storage=self.storage)
        self.clock = self.server.reactor
        self.hooks = self.server.hooks
        self.router = self.server.router
        self.sessions = self.server.sessions
        #: What the default route (federation) was given: (stanza, from, to).
        self.remote: list[tuple[domish.Element, JID, JID]] = []
        self.router.set_default(lambda st, frm, to: self.remote.append((st, frm, to)))
        self.ctx = self.server.features
        self.im = self.server.im

    # -- clients ---------------------------------------------------------------------------

    def login(self, jid: str, **kw: Any) -> FakeSession:
        """A bound session that has sent nothing yet (not available)."""
        kw.setdefault("available", False)
        s = FakeSession(jid, **kw)
        self.sessions.bind(s, s.requested)
        return s

    def online(self, jid: str, priority: int = 0, roster: bool = True) -> FakeSession:
        """Log in, fetch the roster (unless told not to) and send initial presence."""
        s = self.login(jid)
        if roster:
            self.client_iq(s, "get", domish.Element(("jabber:iq:roster", "query")))
        self.presence(s, priority=priority)
        return s

    def client_send(self, session: FakeSession, el: domish.Element) -> None:
        """What ClientSession does: stamp 'from', default 'to', route through outbound."""
        el["from"] = session.address.full()
        to = JID.parse(el["to"]) if el.getAttribute("to") else session.bare
        self.im.outbound.route(el, session.address, to)

    def presence(self, session: FakeSession, to: str | None = None, type: str | None = None,
                 priority: int | None = None, status: str | None = None) -> None:
        p = domish.Element((ns.CLIENT, "presence"))
        if to:
            p["to"] = to
        if type:
            p["type"] = type
        if priority is not None:
            p.addElement("priority", content=str(priority))
        if status is not None:
            p.addElement("status", content=status)
        self.client_send(session, p)

    def client_iq(self, session: FakeSession, type: str, payload: domish.Element, to: str | None = None,
                  id: str = "iq1") -> None:
        iq = domish.Element((ns.CLIENT, "iq"))
        iq["type"] = type
        iq["id"] = id
        if to:
            iq["to"] = to
        iq.addChild(payload)
        self.client_send(session, iq)

    def message(self, frm: str, to: str, body: str = "hi", type: str | None = "chat") -> domish.Element:
        m = domish.Element((ns.CLIENT, "message"))
        m["from"], m["to"] = frm, to
        if type:
            m["type"] = type
        if body is not None:
            m.addElement("body", content=body)
        self.router.route(m, JID.parse(frm), JID.parse(to))
        return m

    def inbound(self, frm: str, to: str, type: str | None = None) -> None:
        """A presence stanza arriving from elsewhere (another server, a component)."""
        p = domish.Element((ns.SERVER, "presence"))
        p["from"], p["to"] = frm, to
        if type:
            p["type"] = type
        self.router.route(p, JID.parse(frm), JID.parse(to))

    def end(self, session: FakeSession) -> None:
        """The connection is gone (as ClientSession.ended does it)."""
        self.sessions.unbind(session)
        self.hooks.fire("c2s/session-ended", session)

    # -- state ------------------------------------------------------------------------------

    def item(self, user: str, contact: str):
        return self.storage.roster.rosters.get((user, DOMAIN), {}).get(contact)


# -- reading what a session received ----------------------------------------------------------


def received(session: FakeSession, name: str | None = None, type: str | None = "*") -> list[domish.Element]:
    out = [el for el in session.sent if name is None or el.name == name]
    if type != "*":
        out = [el for el in out if el.getAttribute("type") == type]
    session.sent = [el for el in session.sent if el not in out]
    return out


def presences(session: FakeSession, type: str | None = "*") -> list[tuple[str, str | None]]:
    """(from, type) of the presence stanzas *session* received, which are consumed."""
    return [(p.getAttribute("from"), p.getAttribute("type")) for p in received(session, "presence", type)]


def pushes(session: FakeSession) -> list[tuple[str, str, str | None]]:
    """(jid, subscription, ask) of each roster push received, consumed."""
    out = []
    for iq in received(session, "iq", "set"):
        query = next(iq.elements("jabber:iq:roster", "query"))
        item = next(query.elements("jabber:iq:roster", "item"))
        out.append((item["jid"], item["subscription"], item.getAttribute("ask")))
    return out


def stanza_error(el: domish.Element) -> str | None:
    for child in el.elements():
        if child.name == "error":
            for cond in child.elements():
                if cond.uri == ns.STANZA_ERRORS and cond.name != "text":
                    return cond.name
    return None


def remote_sent(world: World) -> list[tuple[str, str | None, str, str]]:
    """(name, type, from, to) of what went to the default route, consumed."""
    out = [(st.name, st.getAttribute("type"), st["from"], st["to"]) for st, _, _ in world.remote]
    world.remote.clear()
    return out
