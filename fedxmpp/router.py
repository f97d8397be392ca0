"""The one stanza router of the process.

Every stanza from every session passes :meth:`Router.route` once per hop, after
the receiving session has stamped or validated its ``from``.  The router knows
no transport: hosted domains go to local delivery, domains owned by a service
(components, later clusters) to the route that service registered, and anything
else to the default route (server-to-server federation, once present).

:meth:`Router.route` says when the stanza is *settled*: handed to a live
session's transport, to a server-to-server or component stream, committed to
storage (an offline message, a hibernating session's queue, its archive rows),
or answered with an error.  It returns None when that happened at once, else a
Deferred that fires (never fails) when it has; a client session acknowledges a
stanza (XEP-0198) only once it is settled.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.xml.errors import StanzaError, error_reply
from fedxmpp.xml.jid import JID

log = Logger()

#: When a stanza is settled: None if it is already, else a Deferred firing then.
Settled = Optional["Deferred[None]"]

# (stanza, from, to): every route receives the parsed addresses with the stanza,
# so no hop parses a JID twice.
Route = Callable[[domish.Element, JID, JID], Settled]


class StanzaRouting(Protocol):
    """What a session's stream needs from the router: :class:`Router` itself, or a
    front that runs the sender's server first (``fedxmpp.im.outbound.ClientOutbound``)."""

    @property
    def hosted(self) -> frozenset[str]: ...

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> Settled: ...

    def bounce(self, stanza: domish.Element, frm: JID, to: JID, error: StanzaError) -> None: ...


def all_settled(outcomes: list[Deferred[None]]) -> Settled:
    """One outcome for several (None for none)."""
    if not outcomes:
        return None
    first = outcomes[0]
    if len(outcomes) == 1 or all(o is first for o in outcomes):  # rows of one archive batch share its Deferred
        return first
    distinct = list({id(o): o for o in outcomes}.values())
    return DeferredList(distinct, consumeErrors=True).addCallback(_nothing)


def _nothing(_: object) -> None:
    return None


class Router:
    def __init__(self, hosted: Iterable[str]) -> None:
        self.hosted: frozenset[str] = frozenset(hosted)
        self._local: Route | None = None
        self._routes: dict[str, Route] = {}
        self._default: Route | None = None
        #: Stanzas routed, by element name (message, presence, iq), read by the metrics.
        self.routed_kinds: dict[str, int] = {}

    @property
    def routed(self) -> int:
        """Stanzas routed so far, all kinds."""
        return sum(self.routed_kinds.values())

    def set_local(self, route: Route) -> None:
        """Where stanzas for hosted domains go (the IM delivery layer)."""
        self._local = route

    def add_route(self, domain: str, route: Route) -> None:
        """Send stanzas for *domain* to *route*; a service calls this on authentication."""
        if domain in self.hosted:
            raise ValueError(f"{domain} is a hosted domain and cannot be routed elsewhere")
        self._routes[domain] = route

    def remove_route(self, domain: str, route: Route | None = None) -> None:
        """Forget the route for *domain* (only if it is still *route*, when given)."""
        if route is None or self._routes.get(domain) is route:
            self._routes.pop(domain, None)

    def has_route(self, domain: str) -> bool:
        return domain in self._routes

    def set_default(self, route: Route | None) -> None:
        """Where stanzas for every other domain go (federation)."""
        self._default = route

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> Settled:
        name = stanza.name
        self.routed_kinds[name] = self.routed_kinds.get(name, 0) + 1
        host = to.host
        if host in self.hosted:
            assert self._local is not None, "no local delivery configured"
            return self._local(stanza, frm, to)
        route = self._routes.get(host) or self._default
        if route is not None:
            # Handed to a stream (or its bounded queue, which bounces); an
            # in-process service may say when what it keeps is committed.
            outcome = route(stanza, frm, to)
            return outcome if isinstance(outcome, Deferred) else None
        log.debug("No route to {domain}", domain=host)
        self.bounce(stanza, frm, to, StanzaError("remote-server-not-found", "No route to this domain"))
        return None

    def bounce(self, stanza: domish.Element, frm: JID, to: JID, error: StanzaError) -> None:
        """Answer *stanza* with *error*, routed back to its sender.

        Errors are never answered with errors (RFC 6120 §8.3.1), and neither is
        presence other than subscriptions (nothing waits for it).
        """
        if stanza.getAttribute("type") in ("error", "result"):
            return
        if stanza.name == "presence" and stanza.getAttribute("type") not in ("subscribe", "probe", None):
            return
        reply = error_reply(stanza, error)
        reply["from"] = to.full()
        reply["to"] = frm.full()
        self.route(reply, to, frm)
