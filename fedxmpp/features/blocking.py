"""XEP-0191: Simple Communications Blocking, managed and enforced by the server.

Managing the list (iq to one's own bare JID, i.e. with no 'to'):

* ``<blocklist/>`` get: the blocked addresses; the resource that asked is
  remembered, and gets a push (an iq set) for every later change;
* ``<block/>`` with one or more items (none: ``<bad-request/>``; an unparsable
  address: ``<jid-malformed/>``; more than ``[features] blocklist_max_items`` in
  all: ``<policy-violation/>``);
* ``<unblock/>`` with items, or empty to unblock everybody.

The list is stored in the keyval store ``blocklist`` and kept in memory for
online users and recent correspondents (a bounded LRU cache).  Blocking a contact
allowed to see the user's presence first sends them unavailable presence from
each available resource; unblocking sends the current presence again (§3.3, §3.4).

Enforcement (§3.3, matching per §3.1: full JID, bare JID, domain/resource,
domain and its subdomains), as the ``blocking`` policy step of the delivery
events (inbound) and of the ``pre-`` events of what the user's clients send
(outbound, see :mod:`fedxmpp.im.outbound`; the order is in :mod:`fedxmpp.chains`):

====================================  ==========================================
from a blocked address to the user    presence: dropped silently; message:
                                      ``<service-unavailable/>``; iq get/set:
                                      ``<service-unavailable/>``; iq result and
                                      error: dropped
from the user's client to a blocked   ``<not-acceptable/>`` with ``<blocked
address                               xmlns='urn:xmpp:blocking:errors'/>``
                                      (errors and iq results: dropped)
presence the server sends on the      dropped silently (the broadcast of the
user's behalf to a blocked local      user's presence skips blocked contacts)
address
====================================  ==========================================

Stanzas from the user's own bare JID or own server are never blocked, so nobody
can lock themselves out.  When a list is not in memory yet the handler returns
an awaitable and the stanza's chain waits (bounded) for it to be read.  If it
cannot be read the handler fails, and as a policy it fails closed: the stanza
is refused with ``<internal-server-error/>``, never delivered unchecked.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.features._shared import element_from_bytes, element_to_bytes, in_background
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.storage.errors import NoSuchAccount
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID

log = Logger()

BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
STORE = "blocklist"
# Users whose lists are kept in memory.
CACHE_SIZE = 10_000
# Stanzas that may wait for one user's list to be read.
MAX_WAITING = 1_000

Blocklist = frozenset[JID]


def is_blocked(blocklist: Blocklist, jid: JID) -> bool:
    """Whether *jid* matches an item of *blocklist* (XEP-0191 §3.1)."""
    if not blocklist:
        return False
    # user@domain/resource and domain/resource items match only themselves.
    if jid in blocklist or (jid.resource is not None and jid.user is not None and jid.bare in blocklist):
        return True
    host = jid.host
    while True:
        if JID(None, host) in blocklist:
            return True
        dot = host.find(".")
        if dot < 0:
            return False
        host = host[dot + 1:]


class Blocklists:
    """Every user's blocklist: storage behind a bounded in-memory cache."""

    def __init__(self, ctx: ServerContext, cache_size: int = CACHE_SIZE) -> None:
        self.ctx = ctx
        self.cache_size = cache_size
        self._cache: OrderedDict[JID, Blocklist] = OrderedDict()
        # Users whose list is being read, with what waits for it.
        self._waiting: dict[JID, list[Callable[[bool], None]]] = {}

    def cached(self, user: JID) -> Blocklist | None:
        if self.ctx.storage is None:
            return frozenset()
        blocklist = self._cache.get(user)
        if blocklist is not None:
            self._cache.move_to_end(user)
        return blocklist

    def remember(self, user: JID, blocklist: Blocklist) -> None:
        self._cache[user] = blocklist
        self._cache.move_to_end(user)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self, user: JID) -> None:
        self._cache.pop(user, None)

    def when_loaded(self, users: Iterable[JID], then: Callable[[bool], None]) -> bool:
        """Call ``then(ok)`` once the lists of *users* are in memory (ok) or could not
        be read; False (and no call) if too much is already waiting."""
        missing = [u for u in users if self.cached(u) is None]
        if not missing:
            then(True)
            return True
        user = missing[0]
        queue = self._waiting.get(user)
        if queue is not None and len(queue) >= MAX_WAITING:
            return False

        def next_step(ok: bool) -> None:
            if not ok or not self.when_loaded(missing[1:], then):
                then(False)

        if queue is None:
            self._waiting[user] = [next_step]
            defer.Deferred.fromCoroutine(self._read(user))
        else:
            queue.append(next_step)
        return True

    async def load(self, user: JID) -> Blocklist:
        """The user's list, read from storage unless it is in memory."""
        blocklist = self.cached(user)
        if blocklist is not None:
            return blocklist
        d: defer.Deferred[bool] = defer.Deferred()
        if not self.when_loaded([user], d.callback):
            raise RuntimeError("too many waiting for a blocklist")
        if not await d:
            raise RuntimeError(f"the blocklist of {user} could not be read")
        blocklist = self.cached(user)
        return blocklist if blocklist is not None else frozenset()

    async def _read(self, user: JID) -> None:
        ok = True
        try:
            raw = await self.ctx.storage.keyval.get(user.user, user.host, STORE)
            if user not in self._cache:  # a write may have come first
                self.remember(user, decode(raw))
        except Exception:
            log.failure("Reading the blocklist of {user} failed", user=user.full())
            ok = False
        for then in self._waiting.pop(user, []):
            then(ok)

    async def store(self, user: JID, blocklist: Blocklist) -> None:
        await self.ctx.storage.keyval.set(user.user, user.host, STORE, "", encode(blocklist))


def decode(raw: bytes | None) -> Blocklist:
    if raw is None:
        return frozenset()
    out = set()
    for text in json.loads(raw):
        try:
            out.add(JID.parse(text))
        except InvalidJID:
            log.warn("Ignoring a stored blocklist item that is not a JID: {item!r}", item=text)
    return frozenset(out)


def encode(blocklist: Blocklist) -> bytes | None:
    return json.dumps(sorted(j.full() for j in blocklist)).encode() if blocklist else None


class Blocking:
    """The XEP-0191 feature: list management, pushes and enforcement."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.lists = Blocklists(ctx)
        # Full JIDs that asked for their blocklist, by user (the push targets).
        self.interested: dict[JID, set[JID]] = {}
        # One change at a time per user.
        self._locks: dict[JID, defer.DeferredLock] = {}
        self.max_items = ctx.config.features.blocklist_max_items

    def register(self, hooks: Hooks) -> None:
        self.ctx.disco.server_features.add(BLOCKING)
        hooks.add(f"iq-get/bare/{BLOCKING}", in_background(self._get, "blocklist get"))
        hooks.add(f"iq-set/bare/{BLOCKING}", self._set)
        for event in ("message/bare", "message/full", "presence/bare", "presence/full",
                      "iq-get/bare", "iq-set/bare", "iq-get/full", "iq-set/full",
                      "iq-result/bare", "iq-result/full", "iq-error/bare", "iq-error/full"):
            hooks.add(event, self._inbound, step="blocking")
        for kind in ("host", "bare", "full"):
            for name in ("message", "presence", "iq"):
                hooks.add(f"pre-{name}/{kind}", self._outbound, step="blocking")
        hooks.add("presence/generated-remote", self._generated_remote, step="blocking")
        hooks.add("c2s/session-bound", self._session_bound)
        hooks.add("c2s/session-ended", self._session_ended)
        hooks.add("account/removed", self._account_removed)

    # -- sessions --------------------------------------------------------------------------

    def _session_bound(self, session: Any) -> None:
        # Read the list now, so that the user's first stanzas need not wait for it.
        if self.lists.cached(session.bare) is None:
            self.lists.when_loaded([session.bare], lambda ok: None)

    def _session_ended(self, session: Any) -> None:
        targets = self.interested.get(session.bare)
        if targets is not None:
            targets.discard(session.address)
            if not targets:
                del self.interested[session.bare]

    def _account_removed(self, bare: JID) -> None:
        self.lists.forget(bare)
        self.interested.pop(bare, None)

    # -- enforcement -------------------------------------------------------------------------

    def _inbound(self, event: StanzaEvent) -> bool | defer.Deferred[bool]:
        frm, to = event.frm, event.to
        if to.user is None:
            return False
        owner = to.bare
        if frm.bare == owner or (frm.user is None and frm.host == owner.host):
            return False
        presence = event.stanza.name == "presence"
        # Presence the server sends for a local user is held to that user's list too.
        sender = frm.bare if presence and frm.user is not None and frm.host in self.ctx.router.hosted else None
        if sender is None:
            blocklist = self.lists.cached(owner)
            if blocklist is not None:
                if blocklist and is_blocked(blocklist, frm):
                    self._refuse_inbound(event)
                    return True
                return False
            users = [owner]
        else:
            users = [owner, sender]
            lists = [self.lists.cached(owner), self.lists.cached(sender)]
            if lists[0] is not None and lists[1] is not None:
                return self._judge_inbound(event, lists)  # type: ignore[arg-type]
        return self._after_loading(users, event,
                                   lambda: self._judge_inbound(event, [self._loaded(u) for u in users]))

    def _judge_inbound(self, event: StanzaEvent, lists: list[Blocklist]) -> bool:
        if is_blocked(lists[0], event.frm):
            self._refuse_inbound(event)
            return True
        if len(lists) > 1 and is_blocked(lists[1], event.to):
            return True  # presence to someone the sender blocked: not sent
        return False

    def _generated_remote(self, event: StanzaEvent) -> bool | defer.Deferred[bool]:
        """Presence the server broadcasts for a user to a remote contact the user
        blocked is not sent (§3.3); while the list loads it waits, and if the list
        cannot be read it is not sent either (the policy fails closed)."""
        sender, target = event.frm.bare, event.to
        blocklist = self.lists.cached(sender)
        if blocklist is not None:
            return is_blocked(blocklist, target)
        return self._after_loading([sender], event, lambda: is_blocked(self._loaded(sender), target))

    def _after_loading(self, users: list[JID], event: StanzaEvent,
                       then: Callable[[], bool]) -> bool | defer.Deferred[bool]:
        """``then()`` once the lists of *users* are in memory; a failure (refusing the
        stanza) if they cannot be read."""
        d: defer.Deferred[None] = defer.Deferred()

        def loaded(ok: bool) -> None:
            if ok:
                d.callback(None)
            else:
                d.errback(RuntimeError("a blocklist could not be read"))

        if not self.lists.when_loaded(users, loaded):
            event.error("resource-constraint", "Too many stanzas waiting for this user")
            return True
        return d.addCallback(lambda _: then())

    def _loaded(self, user: JID) -> Blocklist:
        blocklist = self.lists.cached(user)
        if blocklist is None:  # read, then pushed out of the cache meanwhile
            raise RuntimeError(f"the blocklist of {user} is not in memory")
        return blocklist

    def _refuse_inbound(self, event: StanzaEvent) -> None:
        name, stype = event.stanza.name, event.type
        if name == "message" or (name == "iq" and stype in ("get", "set")):
            event.error("service-unavailable")
        # presence, iq results and errors: nothing at all (the user looks offline)

    def _outbound(self, event: StanzaEvent) -> bool | defer.Deferred[bool]:
        """A stanza from one of the user's clients, on its way to the router."""
        frm, to = event.frm, event.to
        user = frm.bare
        if frm.user is None or to.bare == user or (to.user is None and to.host == user.host):
            return False
        blocklist = self.lists.cached(user)
        if blocklist is not None:
            return self._refuse_outbound(event, blocklist)
        return self._after_loading([user], event, lambda: self._refuse_outbound(event, self._loaded(user)))

    def _refuse_outbound(self, event: StanzaEvent, blocklist: Blocklist) -> bool:
        if not blocklist or not is_blocked(blocklist, event.to):
            return False
        self._reject(event, StanzaError("not-acceptable"), blocked=True)
        return True

    def _reject(self, event: StanzaEvent, error: StanzaError, blocked: bool = False) -> None:
        """Answer the sender's session directly: routed, an error 'from' a blocked
        address would itself be dropped as inbound from that address."""
        element = event.stanza
        stype = element.getAttribute("type")
        session = self.ctx.sessions.get(event.frm)
        if session is None or stype == "error" or (element.name == "iq" and stype == "result"):
            return
        reply = error_reply(element, error)
        if blocked:
            for el in reply.elements():
                if el.name == "error":
                    el.addElement((BLOCKING_ERRORS, "blocked"))
        reply["from"] = event.to.full()
        reply["to"] = event.frm.full()
        session.send(reply)

    # -- the list ----------------------------------------------------------------------------

    async def _get(self, event: StanzaEvent) -> None:
        if event.frm.bare != event.to:
            event.error("service-unavailable")
            return
        query = event.payload()
        if query is None or query.name != "blocklist":
            event.error("bad-request")
            return
        blocklist = await self.lists.load(event.to)
        result = domish.Element((BLOCKING, "blocklist"))
        for jid in sorted(j.full() for j in blocklist):
            result.addElement("item")["jid"] = jid
        if event.frm.resource is not None:
            self.interested.setdefault(event.to, set()).add(event.frm)
        event.reply(result)

    def _set(self, event: StanzaEvent) -> bool:
        if event.frm.bare != event.to:
            event.error("service-unavailable")
            return True
        command = event.payload()
        if command is None or command.name not in ("block", "unblock"):
            event.error("bad-request")
            return True
        items: list[JID] = []
        for item in command.elements():
            if item.name != "item":
                continue
            try:
                items.append(JID.parse(item.getAttribute("jid", "")))
            except InvalidJID:
                event.error("jid-malformed", f"Not an address: {item.getAttribute('jid', '')!r}")
                return True
        if command.name == "block" and not items:
            event.error("bad-request", "Name at least one address to block")
            return True
        user = event.to
        lock = self._locks.setdefault(user, defer.DeferredLock())
        d = lock.run(lambda: defer.Deferred.fromCoroutine(self._change(event, command.name, items)))

        def done(result: object) -> object:
            if not lock.locked and not lock.waiting:
                self._locks.pop(user, None)
            return result

        def failed(failure: Any) -> None:
            log.failure("Changing the blocklist of {user} failed", failure, user=user.full())
            event.error("internal-server-error")

        d.addBoth(done).addErrback(failed)
        return True

    async def _change(self, event: StanzaEvent, action: str, items: list[JID]) -> None:
        user = event.to
        old = await self.lists.load(user)
        if action == "block":
            new = old | frozenset(items)
            if len(new) > self.max_items:
                event.error("policy-violation", f"A blocklist may hold at most {self.max_items} addresses")
                return
        else:
            new = old - frozenset(items) if items else frozenset()
        if new == old:
            event.reply()
            return
        try:
            await self.lists.store(user, new)
        except NoSuchAccount:
            event.error("item-not-found")
            return
        added, removed = new - old, old - new
        # Contacts that see the user's presence, among those whose blocking changes.
        watchers = await self._watchers(user, added | removed)
        # Unavailable presence goes out before the block takes effect (it would
        # be suppressed after); current presence after the unblock.
        gone = [c for c in watchers if is_blocked(added, c)]
        self._send_presence(user, gone, available=False)
        self.lists.remember(user, new)
        back = [c for c in watchers if is_blocked(removed, c) and not is_blocked(new, c)]
        self._send_presence(user, back, available=True)
        event.reply()
        self._push(user, action, items)

    async def _watchers(self, user: JID, changed: Blocklist) -> list[JID]:
        """The contacts matching *changed* that may see *user*'s presence."""
        storage = self.ctx.storage
        if not changed or not any(s.available for s in self.ctx.sessions.resources(user)):
            return []
        _, roster = await storage.roster.get_roster(user.user, user.host)
        out = []
        for item in roster:
            if item.subscription not in ("from", "both"):
                continue
            try:
                contact = JID.parse(item.jid)
            except InvalidJID:
                continue
            if is_blocked(changed, contact):
                out.append(contact)
        return out

    def _send_presence(self, user: JID, contacts: list[JID], available: bool) -> None:
        if not contacts:
            return
        for session in self.ctx.sessions.resources(user):
            if not session.available:
                continue
            # The session's last broadcast presence, if the presence code keeps it.
            current = getattr(session, "presence", None) if available else None
            for contact in contacts:
                if current is not None:
                    presence = element_from_bytes(element_to_bytes(current))  # a copy
                    presence.attributes.pop("id", None)
                else:
                    presence = domish.Element((ns.CLIENT, "presence"))
                    if not available:
                        presence["type"] = "unavailable"
                presence["from"] = session.address.full()
                presence["to"] = contact.full()
                self.ctx.router.route(presence, session.address, contact)

    def _push(self, user: JID, action: str, items: list[JID]) -> None:
        for target in sorted(self.interested.get(user, ()), key=JID.full):
            iq = domish.Element((ns.CLIENT, "iq"))
            iq["type"] = "set"
            iq["id"] = "push-" + os.urandom(6).hex()
            iq["from"] = user.full()
            iq["to"] = target.full()
            command = iq.addElement((BLOCKING, action))
            for jid in items:
                command.addElement("item")["jid"] = jid.full()
            self.ctx.router.route(iq, user, target)


def register(hooks: Hooks, ctx: ServerContext) -> None:
    Blocking(ctx).register(hooks)
