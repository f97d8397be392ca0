"""Delivery of stanzas addressed to a hosted domain (RFC 6120 §10.5, RFC 6121 §8).

The router hands every stanza for a hosted domain to :class:`LocalDelivery`, which
fires a layered event named after the stanza and its destination::

    message/host  message/bare  message/full
    presence/host presence/bare presence/full
    iq-get/host/<ns>  iq-set/bare/<ns>  iq-result/full ...

An iq request fires ``iq-get/<kind>`` (or ``iq-set/<kind>``) before the event of
its namespace, for handlers that apply to every request (XEP-0191 blocking).
Features hook these with priorities; the default rules below run last
(priority -1000).  An iq request that nothing handles is answered with
``<service-unavailable/>`` — never silence.  When the default rules have given a
message to one or more resources they fire ``message/delivered`` with
``(event, sessions)`` (XEP-0280 carbons go to the others).

What a hosted domain's own clients send passes the sender-side ``pre-`` events
first (``pre-presence/bare``...; see :mod:`fedxmpp.im.outbound`); roster,
presence and offline messages live in :mod:`fedxmpp.im.roster`,
:mod:`fedxmpp.im.presence` and :mod:`fedxmpp.im.offline`.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.hooks import Hooks
from fedxmpp.im.sessions import BoundSession, SessionManager
from fedxmpp.router import Router
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID

log = Logger()

DEFAULT = -1000


@dataclass
class StanzaEvent:
    """A stanza on its way to a local destination, with its parsed addresses."""

    stanza: domish.Element
    frm: JID
    to: JID
    router: Router

    @property
    def type(self) -> str | None:
        return self.stanza.getAttribute("type")

    def payload(self) -> domish.Element | None:
        for child in self.stanza.elements():
            return child
        return None

    def reply(self, payload: domish.Element | None = None) -> None:
        """Answer an iq request with a result carrying *payload*."""
        result = domish.Element((ns.CLIENT, "iq"))
        result["type"] = "result"
        result["id"] = self.stanza.getAttribute("id", "")
        result["from"] = self.to.full()
        result["to"] = self.frm.full()
        if payload is not None:
            result.addChild(payload)
        self.router.route(result, self.to, self.frm)

    def error(self, condition: str, text: str | None = None) -> None:
        """Answer the stanza with a stanza error, routed back to its sender."""
        self.router.bounce(self.stanza, self.frm, self.to, StanzaError(condition, text))


class LocalDelivery:
    """The router's route for hosted domains."""

    def __init__(self, hooks: Hooks, sessions: SessionManager, router: Router) -> None:
        self.hooks = hooks
        self.sessions = sessions
        self.router = router
        hooks.add("message/full", self._message_full, DEFAULT)
        hooks.add("message/bare", self._message_bare, DEFAULT)
        hooks.add("message/host", self._message_host, DEFAULT)
        hooks.add("presence/full", self._presence_full, DEFAULT)
        hooks.add("presence/bare", self._presence_bare, DEFAULT)
        hooks.add("iq/full", self._iq_full, DEFAULT)

    def __call__(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        kind = "host" if to.user is None else ("bare" if to.resource is None else "full")
        event = StanzaEvent(stanza, frm, to, self.router)
        name = stanza.name
        if name == "iq":
            stype = stanza.getAttribute("type")
            if stype in ("get", "set"):
                child = event.payload()
                xmlns = child.uri if child is not None else ""
                # Every request, whatever its namespace, before the handlers of its
                # namespace (for policies such as XEP-0191 blocking).
                if self.hooks.fire(f"iq-{stype}/{kind}", event):
                    return
                if self.hooks.fire(f"iq-{stype}/{kind}/{xmlns}", event):
                    return
                if kind == "full" and self.hooks.fire("iq/full", event):
                    return
                event.error("service-unavailable")
                return
            if self.hooks.fire(f"iq-{stype}/{kind}", event) or self.hooks.fire(f"iq/{kind}", event):
                return
            return  # results and errors nobody waits for are dropped (RFC 6120 §8.2.3)
        if not self.hooks.fire(f"{name}/{kind}", event):
            log.debug("Unhandled {name} to {kind} address", name=name, kind=kind)

    # -- the default rules ----------------------------------------------------------------

    def _iq_full(self, event: StanzaEvent) -> bool:
        session = self.sessions.get(event.to)
        if session is not None:
            session.send(event.stanza)
        elif event.type in ("get", "set"):
            event.error("service-unavailable")
        return True

    def _message_full(self, event: StanzaEvent) -> bool:
        session = self.sessions.get(event.to)
        if session is not None:
            session.send(event.stanza)
            self._delivered(event, (session,))
            return True
        # RFC 6121 §8.5.3.2.1: no such resource; normal and chat fall back to the bare JID.
        if event.type in (None, "normal", "chat"):
            return self.hooks.fire("message/bare", event)
        if event.type == "groupchat":
            event.error("service-unavailable")
        return True

    def _message_bare(self, event: StanzaEvent) -> bool:
        targets = self._best_resources(event.to.bare)
        mtype = event.type
        if mtype == "error":
            return True
        if mtype == "headline":
            for s in self._available(event.to.bare):
                if s.priority >= 0:
                    s.send(event.stanza)
            return True
        if mtype == "groupchat":
            event.error("service-unavailable")
            return True
        if not targets:
            event.error("service-unavailable", "The recipient is not available")
            return True
        if mtype != "chat":
            targets = targets[:1]
        for s in targets:
            s.send(event.stanza)
        self._delivered(event, tuple(targets))
        return True

    def _message_host(self, event: StanzaEvent) -> bool:
        if event.type not in ("error", "groupchat", "headline"):
            event.error("service-unavailable")
        return True

    def _presence_full(self, event: StanzaEvent) -> bool:
        session = self.sessions.get(event.to)
        if session is not None:
            session.send(event.stanza)
        return True

    def _presence_bare(self, event: StanzaEvent) -> bool:
        # Presence to a user goes to their available resources.  A user's own
        # broadcasts, subscriptions and probes are handled before this by
        # fedxmpp.im.presence.
        for s in self._available(event.to):
            s.send(event.stanza)
        return True

    # -- helpers -------------------------------------------------------------------------------

    def _delivered(self, event: StanzaEvent, sessions: tuple[BoundSession, ...]) -> None:
        """Tell who cares (XEP-0280 carbons) which resources a message was given to:
        ``message/delivered`` with ``(event, sessions)``."""
        if self.hooks.has("message/delivered"):
            self.hooks.fire("message/delivered", (event, sessions))

    def _available(self, bare: JID) -> list[BoundSession]:
        return [s for s in self.sessions.resources(bare) if s.available]

    def _best_resources(self, bare: JID) -> list[BoundSession]:
        """The available resources of highest non-negative priority (RFC 6121 §8.5.2.1.1)."""
        candidates = [s for s in self._available(bare) if s.priority >= 0]
        if not candidates:
            return []
        top = max(s.priority for s in candidates)
        return [s for s in candidates if s.priority == top]
