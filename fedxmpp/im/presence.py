"""Presence (RFC 6121 §4) and the carrying-out of subscriptions (§3).

Outbound, from the user's own resources (``pre-presence/*`` events, see
:mod:`fedxmpp.im.outbound`):

* presence without 'to' sets the resource's availability and priority, and is
  broadcast to the contacts with a 'from' or 'both' subscription and to the
  user's available resources.  The first one (initial presence) also sends
  probes to the contacts with 'to' or 'both', gives the new resource the presence
  of the user's other resources and the subscription requests still waiting for
  an answer, and, with a non-negative priority, releases offline messages;
* unavailable presence goes to the same people and to everyone the resource sent
  directed presence to (§4.6.3); so does the unavailable presence the server
  sends for a session that ended without one, cleanly or not;
* directed presence is routed as it is and remembered;
* subscription stanzas go through :func:`fedxmpp.im.subscription.outbound`, are
  stamped with the user's bare JID and routed — to a local user, a remote server
  or a component alike.

Inbound, to a local user (``presence/bare`` and ``presence/full``):
subscription stanzas go through :func:`fedxmpp.im.subscription.inbound`; probes
are answered with the presence of the user's available resources, unavailable
presence, or ``unsubscribed`` for someone without a subscription (§4.3.2); other
presence is delivered by the default rules of :mod:`fedxmpp.im.delivery`.

Everything that reads or changes a user's roster runs in that user's queue
(:class:`~fedxmpp.im.serial.SerialJobs`); presence delivered to a user whose
queue is busy waits in it too, so that it never overtakes the roster work before
it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.hooks import PolicyFailed
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.offline import OfflineMessages
from fedxmpp.im.roster import Roster
from fedxmpp.im.serial import SerialJobs
from fedxmpp.im.sessions import BoundSession
from fedxmpp.im.subscription import SUBSCRIPTION_TYPES, inbound, outbound
from fedxmpp.storage import NoSuchAccount, RosterItem, StorageError
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID

if TYPE_CHECKING:
    from fedxmpp.im.context import ServerContext

log = Logger()

# Addresses one session may have sent directed presence to at once.
MAX_DIRECTED = 1000

PRE_APPROVAL = "urn:xmpp:features:pre-approval"

_FROM = ("from", "both")
_TO = ("to", "both")


class Presence:
    def __init__(self, ctx: ServerContext, roster: Roster, serial: SerialJobs,
                 offline: OfflineMessages) -> None:
        self.ctx = ctx
        self.roster = roster
        self.serial = serial
        self.offline = offline
        self._directed: dict[BoundSession, set[JID]] = {}
        self._eligible: set[BoundSession] = set()  # available with priority >= 0
        hooks = ctx.hooks
        for kind in ("host", "bare", "full"):
            hooks.add(f"pre-presence/{kind}", self._outbound, step="presence")
        hooks.add("presence/bare", self._inbound, step="presence")
        hooks.add("presence/full", self._inbound, step="presence")
        hooks.add("c2s/session-ended", self._session_ended)
        hooks.add("c2s/features", self._stream_features)

    # -- queries for other modules ---------------------------------------------------------

    def available(self, bare: JID) -> list[BoundSession]:
        """The user's available resources."""
        return [s for s in self.ctx.sessions.resources(bare) if s.available]

    # -- outbound ------------------------------------------------------------------------------

    def _outbound(self, event: StanzaEvent) -> bool:
        stanza, ptype = event.stanza, event.type
        if stanza.getAttribute("to") is None:
            session = self.ctx.sessions.get(event.frm)
            if session is not None and ptype in (None, "unavailable"):
                self._own_presence(session, stanza)
            return True  # other types without an addressee mean nothing: dropped
        if ptype in SUBSCRIPTION_TYPES:
            self.serial.run(event.frm.bare, self._outbound_subscription, event)
            return True
        if ptype in (None, "unavailable") and event.to.bare != event.frm.bare:
            session = self.ctx.sessions.get(event.frm)
            if session is not None:
                if ptype is None:
                    targets = self._directed.setdefault(session, set())
                    if event.to not in targets and len(targets) >= MAX_DIRECTED:
                        # Remembered targets get unavailable at logout (§4.6.3); the set is bounded.
                        event.error("resource-constraint", "Too many directed presence recipients")
                        return True
                    targets.add(event.to)
                elif session in self._directed:
                    self._directed[session].discard(event.to)
        return False  # routed as it is

    def _own_presence(self, session: BoundSession, stanza: domish.Element) -> None:
        """Availability changes at once (so messages find the resource); the
        broadcast, which needs the roster, follows in the user's queue."""
        was_available = session.available
        if stanza.getAttribute("type") is None:
            session.available = True
            session.priority = _priority(stanza)
            session.presence = stanza
        else:
            session.available = False
            session.presence = None
        eligible = session.available and session.priority >= 0
        if eligible and session not in self._eligible:
            self._eligible.add(session)
            self.offline.session_available(session)
        elif not eligible:
            self._eligible.discard(session)
        # Unavailable also goes to whoever got directed presence until now (§4.6.3).
        directed = set() if session.available else self._directed.pop(session, set())
        if session.available or was_available or directed:
            initial = session.available and not was_available
            self.serial.run(session.bare, self._broadcast, session, stanza, initial, directed)

    async def _broadcast(self, session: BoundSession, stanza: domish.Element, initial: bool,
                         directed: set[JID]) -> None:
        owner = session.bare
        address = session.address
        items = await self._items(owner)
        unavailable = stanza.getAttribute("type") == "unavailable"
        subscribers = {item.jid for item in items if item.subscription in _FROM}
        for jid in sorted(subscribers):
            self._route_copy(stanza, address, JID.parse(jid))
        for target in directed:
            if target.bare.full() not in subscribers:
                self._route_copy(stanza, address, target)
        current = self.ctx.sessions.get(address) is session
        for other in self.ctx.sessions.resources(owner):
            if other is session:
                if current and not unavailable:
                    other.send(_readdressed(stanza, address, other.address))
            elif other.available:
                other.send(_readdressed(stanza, address, other.address))
        if initial and current:
            for item in items:
                if item.subscription in _TO:
                    self._route_new(owner, JID.parse(item.jid), "probe")
            for other in self.ctx.sessions.resources(owner):
                if other is not session and other.available and other.presence is not None:
                    session.send(_readdressed(other.presence, other.address, address))
            for item in items:
                if item.pending_in:
                    request = _presence(JID.parse(item.jid), owner, "subscribe")
                    session.send(request)

    # -- subscriptions -----------------------------------------------------------------------

    async def _outbound_subscription(self, event: StanzaEvent) -> None:
        owner, contact, kind = event.frm.bare, event.to.bare, event.type
        assert kind is not None
        if contact == owner:
            return  # a subscription to oneself means nothing
        try:
            cached = await self.roster.load(owner)
        except StorageError:
            event.error("internal-server-error", "The roster could not be read")
            return
        key = contact.full()
        before = cached.items.get(key)
        outcome = outbound(before, key, kind)
        if outcome.changed:
            if before is None and not self.roster.has_room(len(cached.items)):
                event.error("not-allowed", f"A roster holds at most {self.roster.max_items} items")
                return
            try:
                await self.roster.write(owner, key, before, outcome.item)
            except (StorageError, NoSuchAccount) as e:
                log.error("Subscription change for {owner} failed: {error}", owner=owner.full(), error=str(e))
                event.error("internal-server-error", "The roster could not be changed")
                return
        if outcome.forward:
            # §3.1.2: stamped with the user's bare JID.
            self._route_copy(event.stanza, owner, contact)
        if outcome.send_presence:
            self._send_presence_of(owner, contact)
        if outcome.send_unavailable:
            for session in self.available(owner):
                self._route_new(session.address, contact, "unavailable")

    async def _inbound_subscription(self, event: StanzaEvent) -> None:
        owner, contact, kind = event.to.bare, event.frm.bare, event.type
        assert kind is not None
        if contact == owner:
            return
        key = contact.full()
        try:
            before = await self.roster.item(owner, contact)
            outcome = inbound(before, key, kind)
            if outcome.changed:
                if before is None:
                    cached = await self.roster.load(owner)
                    if not self.roster.has_room(len(cached.items)):
                        event.error("resource-constraint", "The user's roster is full")
                        return
                await self.roster.write(owner, key, before, outcome.item)
        except NoSuchAccount:
            if kind == "subscribe":  # §3.1.3: no such user
                self._route_new(owner, contact, "unsubscribed")
            return
        except StorageError as e:
            log.error("Subscription change for {owner} failed: {error}", owner=owner.full(), error=str(e))
            if kind == "subscribe":
                event.error("internal-server-error", "The request could not be stored")
            return
        if outcome.reply is not None:
            self._route_new(owner, contact, outcome.reply)
        if outcome.send_presence:
            self._send_presence_of(owner, contact)
        if outcome.forward:
            for session in self.available(owner):
                session.send(_readdressed(event.stanza, contact, owner))
        if outcome.send_unavailable:
            # §3.3.3: the contact who unsubscribed sees the user's resources go away.
            for session in self.available(owner):
                self._route_new(session.address, contact, "unavailable")

    # -- probes (§4.3.2) -----------------------------------------------------------------------

    async def _probe(self, event: StanzaEvent) -> None:
        owner, prober = event.to.bare, event.frm
        if prober.bare != owner:
            try:
                item = await self.roster.item(owner, prober.bare)
            except StorageError:
                return  # nothing to reveal; the prober will probe again
            if item is None or item.subscription not in _FROM:
                self._route_new(owner, prober, "unsubscribed")
                return
        if not self._send_presence_of(owner, prober):
            self._route_new(owner, prober, "unavailable")

    # -- inbound ---------------------------------------------------------------------------------

    def _inbound(self, event: StanzaEvent) -> bool:
        ptype = event.type
        owner = event.to.bare
        if ptype in SUBSCRIPTION_TYPES:
            self.serial.run(owner, self._inbound_subscription, event)
            return True
        if ptype == "probe":
            self.serial.run(owner, self._probe, event)
            return True
        if self.serial.busy(owner):
            self.serial.run(owner, self._deliver, event)
            return True
        return False  # the default rules deliver it now

    def _deliver(self, event: StanzaEvent) -> None:
        if event.to.resource is None:
            for session in self.available(event.to):
                session.send(event.stanza)
        else:
            target = self.ctx.sessions.get(event.to)
            if target is not None:
                target.send(event.stanza)

    # -- end of a session --------------------------------------------------------------------------

    def _session_ended(self, session: BoundSession) -> None:
        directed = self._directed.pop(session, set())
        self._eligible.discard(session)
        was_available = session.available
        session.available = False
        self.serial.run(session.bare, self._ended, session, was_available, directed)

    async def _ended(self, session: BoundSession, was_available: bool, directed: set[JID]) -> None:
        owner, address = session.bare, session.address
        # A session that replaced this one (same resource) speaks for the address now.
        if self.ctx.sessions.get(address) is None and (was_available or directed):
            unavailable = _presence(address, None, "unavailable")
            subscribers: set[str] = set()
            if was_available:
                items = await self._items(owner)
                subscribers = {item.jid for item in items if item.subscription in _FROM}
                for jid in sorted(subscribers):
                    self._route_copy(unavailable, address, JID.parse(jid))
                for other in self.available(owner):
                    other.send(_readdressed(unavailable, address, other.address))
            for target in directed:
                if target.bare.full() not in subscribers:
                    self._route_copy(unavailable, address, target)
        self.roster.forget(owner)

    # -- helpers ------------------------------------------------------------------------------------

    async def _items(self, owner: JID) -> Iterable[RosterItem]:
        try:
            cached = await self.roster.load(owner)
        except StorageError as e:
            log.error("No roster for the presence of {owner}: {error}", owner=owner.full(), error=str(e))
            return ()
        return list(cached.items.values())

    def _send_presence_of(self, owner: JID, to: JID) -> int:
        """Route the presence of *owner*'s available resources to *to*; how many."""
        count = 0
        for session in self.available(owner):
            if session.presence is not None:
                self._route_copy(session.presence, session.address, to)
                count += 1
        return count

    def _route_copy(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        self._route_generated(_readdressed(stanza, frm, to), frm, to)

    def _route_new(self, frm: JID, to: JID, ptype: str) -> None:
        self._route_generated(_presence(frm, to, ptype), frm, to)

    def _route_generated(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        """Route presence the server sends on a user's behalf.  For a local contact the
        delivery events see it; for anyone else "presence/generated-remote" is the one
        place a feature (blocking) can hold it back: a handler returning True does."""
        if to.host in self.ctx.router.hosted:
            self.ctx.router.route(stanza, frm, to)
            return
        try:
            held = self.ctx.hooks.run("presence/generated-remote", StanzaEvent(stanza, frm, to, self.ctx.router))
        except PolicyFailed:
            return  # a policy that cannot decide holds it back
        if isinstance(held, Deferred):
            held.addCallbacks(lambda h: None if h else self.ctx.router.route(stanza, frm, to), lambda f: None)
        elif not held:
            self.ctx.router.route(stanza, frm, to)

    def _stream_features(self, features: domish.Element) -> None:
        features.addElement((PRE_APPROVAL, "sub"))


def _presence(frm: JID, to: JID | None, ptype: str | None) -> domish.Element:
    p = domish.Element((ns.CLIENT, "presence"))
    if ptype is not None:
        p["type"] = ptype
    p["from"] = frm.full()
    if to is not None:
        p["to"] = to.full()
    return p


def _readdressed(stanza: domish.Element, frm: JID, to: JID) -> domish.Element:
    """A copy of *stanza* from *frm* to *to*; the children are shared, not copied
    (nothing downstream changes a stanza's children)."""
    el = domish.Element((stanza.uri, stanza.name), attribs=dict(stanza.attributes))
    el["from"] = frm.full()
    el["to"] = to.full()
    el.children = list(stanza.children)
    return el


def _priority(stanza: domish.Element) -> int:
    """The <priority/> of an available presence, clamped to -128..127; 0 if absent
    or not a number (RFC 6121 §4.7.2.3)."""
    for child in stanza.elements():
        if child.name == "priority":
            try:
                value = int(str(child).strip())
            except ValueError:
                return 0
            return max(-128, min(127, value))
    return 0
