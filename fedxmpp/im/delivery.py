"""Delivery of stanzas addressed to a hosted domain (RFC 6120 §10.5, RFC 6121 §8).

The router hands every stanza for a hosted domain to :class:`LocalDelivery`, which
fires a layered event named after the stanza and its destination::

    message/host  message/bare  message/full
    presence/host presence/bare presence/full
    iq-get/host/<ns>  iq-set/bare/<ns>  iq-result/full ...

An iq request fires ``iq-get/<kind>`` (or ``iq-set/<kind>``) before the event of
its namespace, for handlers that apply to every request (XEP-0191 blocking).
The order of each event's handlers is the table in :mod:`fedxmpp.chains`; the
default rules below run last.  An iq request that nothing handles is answered
with ``<service-unavailable/>`` — never silence.  When the default rules have
given a message to one or more resources they fire ``message/delivered`` with
``(event, sessions)`` (XEP-0280 carbons go to the others).

A handler may return an awaitable (a list or a preference to read): the chain
goes on when it resolves.  Stanzas for one user (bare JID) pass their chains one
after the other, in the order they arrived (:class:`~fedxmpp.im.serial.SerialJobs`,
synchronous when nothing waits); at most :data:`MAX_WAITING` may wait, the next
is answered with ``<resource-constraint/>``.  A stanza passes the router once
per hop: nothing is parked and routed again.  A policy handler that fails
refuses the stanza with ``<internal-server-error/>``.

Handlers that keep the stanza somewhere (a session, offline storage, the
archive) tell the event with :meth:`StanzaEvent.settles_when`; the route's
outcome fires when all of those have (see :mod:`fedxmpp.router`).

What a hosted domain's own clients send passes the sender-side ``pre-`` events
first (``pre-presence/bare``...; see :mod:`fedxmpp.im.outbound`); roster,
presence and offline messages live in :mod:`fedxmpp.im.roster`,
:mod:`fedxmpp.im.presence` and :mod:`fedxmpp.im.offline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.hooks import Hooks, PolicyFailed
from fedxmpp.im.serial import SerialJobs, TooManyWaiting
from fedxmpp.im.sessions import BoundSession, SessionManager
from fedxmpp.router import Router, Settled, all_settled
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID

log = Logger()

# Stanzas for one user that may wait behind a chain that waits.
MAX_WAITING = 10_000


@dataclass
class StanzaEvent:
    """A stanza on its way to a local destination, with its parsed addresses."""

    stanza: domish.Element
    frm: JID
    to: JID
    router: Router
    #: What the stanza's settlement waits for (see :meth:`settles_when`).
    pending: list[Deferred[None]] | None = field(default=None, repr=False, compare=False)

    def settles_when(self, outcome: Settled) -> None:
        """The stanza is kept somewhere that is not final until *outcome* fires
        (a storage commit); None: nothing to wait for."""
        if outcome is not None:
            if self.pending is None:
                self.pending = [outcome]
            else:
                self.pending.append(outcome)

    def settled(self) -> Settled:
        return None if self.pending is None else all_settled(self.pending)

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
        #: One chain at a time per recipient (bare JID), in order of arrival.
        self.serial = SerialJobs()
        hooks.add("message/full", self._message_full, step="delivery")
        hooks.add("message/bare", self._message_bare, step="delivery")
        hooks.add("message/host", self._message_host, step="delivery")
        hooks.add("presence/full", self._presence_full, step="delivery")
        hooks.add("presence/bare", self._presence_bare, step="delivery")
        hooks.add("iq/full", self._iq_full, step="delivery")

    def __call__(self, stanza: domish.Element, frm: JID, to: JID) -> Settled:
        event = StanzaEvent(stanza, frm, to, self.router)
        try:
            done = self.serial.attempt(to.bare, self._chain, event, limit=MAX_WAITING)
        except TooManyWaiting:
            event.error("resource-constraint", "Too many stanzas waiting for this address")
            return None
        except PolicyFailed:
            event.error("internal-server-error", "The server could not apply its policy to this stanza")
            return None
        if done is True or done is False:
            return event.settled()
        return done.addCallbacks(_settled, _refused, callbackArgs=(event,), errbackArgs=(event,))

    def _chain(self, event: StanzaEvent) -> bool | Deferred[bool]:
        """Fire the stanza's events in turn until one handles it."""
        to, stanza = event.to, event.stanza
        kind = "host" if to.user is None else ("bare" if to.resource is None else "full")
        name = stanza.name
        if name == "iq":
            stype = stanza.getAttribute("type")
            if stype in ("get", "set"):
                child = event.payload()
                xmlns = child.uri if child is not None else ""
                # Every request, whatever its namespace, before the handlers of its
                # namespace (for policies such as XEP-0191 blocking).
                events: tuple[str, ...] = (f"iq-{stype}/{kind}", f"iq-{stype}/{kind}/{xmlns}")
                if kind == "full":
                    events += ("iq/full",)
            else:
                events = (f"iq-{stype}/{kind}", f"iq/{kind}")
        else:
            events = (f"{name}/{kind}",)
        return self._fire_in_turn(events, 0, event)

    def _fire_in_turn(self, events: tuple[str, ...], at: int, event: StanzaEvent) -> bool | Deferred[bool]:
        while at < len(events):
            handled = self.hooks.run(events[at], event)
            if handled is True:
                return True
            if handled is not False:  # waiting
                return handled.addCallback(self._then, events, at, event)
            at += 1
        self._unhandled(event)
        return False

    def _then(self, handled: bool, events: tuple[str, ...], at: int, event: StanzaEvent) -> bool | Deferred[bool]:
        return True if handled else self._fire_in_turn(events, at + 1, event)

    @staticmethod
    def _unhandled(event: StanzaEvent) -> None:
        stanza = event.stanza
        if stanza.name == "iq":
            if stanza.getAttribute("type") in ("get", "set"):
                event.error("service-unavailable")
            # results and errors nobody waits for are dropped (RFC 6120 §8.2.3)
            return
        log.debug("Unhandled {name} to {to}", name=stanza.name, to=event.to.full())

    # -- the default rules ----------------------------------------------------------------

    def _iq_full(self, event: StanzaEvent) -> bool:
        session = self.sessions.get(event.to)
        if session is not None:
            event.settles_when(session.send(event.stanza))
        elif event.type in ("get", "set"):
            event.error("service-unavailable")
        return True

    def _message_full(self, event: StanzaEvent) -> bool | Deferred[bool]:
        session = self.sessions.get(event.to)
        if session is not None:
            event.settles_when(session.send(event.stanza))
            self._delivered(event, (session,))
            return True
        # RFC 6121 §8.5.3.2.1: no such resource; normal and chat fall back to the bare JID.
        if event.type in (None, "normal", "chat"):
            return self.hooks.run("message/bare", event)
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
            event.settles_when(s.send(event.stanza))
        self._delivered(event, tuple(targets))
        return True

    def _message_host(self, event: StanzaEvent) -> bool:
        if event.type not in ("error", "groupchat", "headline"):
            event.error("service-unavailable")
        return True

    def _presence_full(self, event: StanzaEvent) -> bool:
        session = self.sessions.get(event.to)
        if session is not None:
            event.settles_when(session.send(event.stanza))
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


def _settled(_: Any, event: StanzaEvent) -> Settled:
    return event.settled()


def _refused(failure: Failure, event: StanzaEvent) -> None:
    """The chain failed after waiting: a policy could not decide (or a bug).  The
    stanza is refused, never delivered past the policy."""
    if not failure.check(PolicyFailed):
        log.failure("Delivering a stanza to {to} failed", failure, to=event.to.full())
    event.error("internal-server-error", "The server could not apply its policy to this stanza")
    return None
