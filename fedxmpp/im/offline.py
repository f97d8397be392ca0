"""Offline messages (XEP-0160) with their XEP-0203 delay stamp, and the
"no such user" rule of RFC 6121 §8.5.2.2.

A ``normal`` or ``chat`` message to a user with no available resource of
non-negative priority is stored with ``<delay xmlns='urn:xmpp:delay'/>`` naming
the server and the time it was stored.  The store call itself checks that the
account exists, in the same transaction: for a user who does not exist the
sender gets ``<service-unavailable/>`` (RFC 6121 §8.5.2.2.1), and so does the
sender when the user's quota (``[im] offline_quota``) is full (XEP-0160 §2,
step 3).  A message that carries nothing but a chat state is not kept, and not
answered with an error either (XEP-0085 §5.8).

When a resource becomes available with a non-negative priority, the presence
module calls :meth:`OfflineMessages.session_available`: the stored messages are
sent to that resource, oldest first (XEP-0160 §2, step 5), read a page at a
time and paced by the session (``session.ready()``: the transport's flow
control, and half the XEP-0198 queue).  Each is sent with
``session.send_tracked`` and its row deleted only when that says it was
delivered — acknowledged under stream management, or passed on by a connection
still open without (see :meth:`fedxmpp.c2s.session.ClientSession.send_tracked`);
what was not stays stored, in order, for the next login.  One flush runs per
user: a resource that becomes available meanwhile takes over if the one being
served goes first.  Messages to the user's bare JID that arrive while it runs
wait in the user's delivery chain (the ``offline-hold`` step returns an
awaitable) and go on after the stored ones, so the order stays the order of
arrival.

Once a message is committed, ``offline/stored`` is fired with a
:class:`StoredOffline` (XEP-0357 push wakes the user's devices).

A message stored for later is *settled* (:mod:`fedxmpp.router`) when its row is
committed, or when its sender was answered with an error; shutdown waits for
the stores still running (``storage/flush``).

A chat or normal message that a client never acknowledged under stream
management (XEP-0198) before its session ended for good is offered to the
``"c2s/unacked"`` hook as ``(session, stanza)``, and stored here for the user as
if it had arrived while they were offline (XEP-0198 §5).  Copies — carbons
(XEP-0280) and archive results (XEP-0313) — are not: their originals are kept
elsewhere.  A message that already carries this server's delay stamp keeps it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.sessions import BoundSession
from fedxmpp.storage import NoSuchAccount, StorageError
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID, InvalidJID
from fedxmpp.xml.parser import parse_stanza
from fedxmpp.xml.serialize import serialize

if TYPE_CHECKING:
    from fedxmpp.im.context import ServerContext

log = Logger()

DELAY = "urn:xmpp:delay"
CHATSTATES = "http://jabber.org/protocol/chatstates"
# The wrappers of messages that are copies of messages delivered or archived elsewhere.
COPIES = frozenset({("urn:xmpp:carbons:2", "sent"), ("urn:xmpp:carbons:2", "received"),
                    ("urn:xmpp:mam:2", "result")})
MSGOFFLINE = "msgoffline"  # XEP-0160 §4: the disco feature

# Stored messages read from storage at a time while delivering them.
READ_BATCH = 200


@dataclass(frozen=True)
class StoredOffline:
    """What the ``offline/stored`` hook is given once a message for *user* is
    committed: the stored *stanza*, and the session whose client never
    acknowledged it when that is how it came here (else None)."""

    user: JID
    stanza: domish.Element
    unacked_by: object = None


@dataclass
class _Flush:
    """The delivery of one user's stored messages: messages to the bare JID that
    arrive meanwhile are held back, sessions that become available meanwhile wait
    (one takes over if the session being served goes first), and the receipts of
    what was sent and not yet confirmed."""

    #: Fired (with False: the chain goes on) when the flush is over.
    held: list[Deferred[bool]] = field(default_factory=list)
    waiting: list[BoundSession] = field(default_factory=list)
    pending: set[Deferred[bool]] = field(default_factory=set)


class OfflineMessages:
    def __init__(self, ctx: ServerContext, *, quota: int) -> None:
        self.ctx = ctx
        self.quota = quota
        self._flushing: dict[JID, _Flush] = {}
        # Delivered stored messages whose rows are being deleted, per user.
        self._delivered_ids: dict[JID, set[int]] = {}
        self._to_delete: dict[JID, list[int]] = {}
        self._deleting: set[JID] = set()
        #: Stores not committed yet (shutdown waits for them).
        self._storing: set[Deferred[None]] = set()
        #: Stored, delivered: counters for logs and tests.
        self.stored = 0
        self.delivered = 0
        ctx.hooks.add("message/bare", self._hold, step="offline-hold")
        ctx.hooks.add("message/bare", self._message_bare, step="offline")
        ctx.hooks.add("c2s/unacked", self._unacked)
        ctx.hooks.add("storage/flush", self._closing)
        ctx.hooks.add("metrics/backlog", self._backlog)
        if quota > 0:
            ctx.disco.server_features.add(MSGOFFLINE)

    # -- storing ------------------------------------------------------------------------

    def _hold(self, event: StanzaEvent) -> bool | Deferred[bool]:
        flush = self._flushing.get(event.to)
        if flush is None:
            return False
        after: Deferred[bool] = Deferred()
        flush.held.append(after)
        return after

    def _backlog(self, backlog: dict[str, int]) -> bool:
        backlog["offline"] = len(self._storing)
        return False

    def _closing(self, _: object) -> Deferred[list[tuple[bool, None]]]:
        return DeferredList(list(self._storing))

    def _start_store(self, event: StanzaEvent, what: str, unacked_by: object = None) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._store(event, unacked_by))
        d.addErrback(lambda f: log.failure("{what} failed", f, what=what))
        self._storing.add(d)
        d.addBoth(lambda r: self._storing.discard(d))
        return d

    def _message_bare(self, event: StanzaEvent) -> bool:
        if event.type not in (None, "normal", "chat"):
            return False
        if self.quota <= 0:
            return False  # the default rules answer <service-unavailable/>
        for session in self.ctx.sessions.resources(event.to):
            if session.available and session.priority >= 0:
                return False  # someone to deliver to: the default rules
        if _only_chat_state(event.stanza):
            return True
        event.settles_when(self._start_store(event, "Storing an offline message"))
        return True

    def _unacked(self, payload: tuple[BoundSession, domish.Element]) -> bool | Deferred[bool]:
        """A message the client of a session that is over never acknowledged
        (XEP-0198): stored for the user; True when taken."""
        session, stanza = payload
        if stanza.name != "message" or stanza.getAttribute("type") not in (None, "normal", "chat"):
            return False
        if any((c.uri, c.name) in COPIES for c in stanza.elements()):
            return True
        if self.quota <= 0:
            return False
        if _only_chat_state(stanza):
            return True
        try:
            frm = JID.parse(stanza.getAttribute("from", ""))
        except InvalidJID:
            frm = session.bare.domain
        event = StanzaEvent(stanza, frm, session.bare, self.ctx.router)
        # Taken once stored (or answered with an error): the caller waits for it.
        return self._start_store(event, "Storing an unacknowledged message", session).addCallback(lambda _: True)

    async def _store(self, event: StanzaEvent, unacked_by: object = None) -> None:
        to = event.to
        stamped = _copy(event.stanza)
        if not any(c.uri == DELAY and c.name == "delay" and c.getAttribute("from") == to.host
                   for c in stamped.elements()):
            delay = stamped.addElement((DELAY, "delay"))
            delay["from"] = to.host
            delay["stamp"] = _stamp(self.ctx.clock.seconds())
        try:
            stored = await self.ctx.storage.offline.store(to.user, to.host, serialize(stamped, ns.CLIENT),
                                                          self.quota)
        except NoSuchAccount:
            event.error("service-unavailable")
            return
        except StorageError as e:
            log.error("Could not store a message for {user}: {error}", user=to.full(), error=str(e))
            event.error("internal-server-error", "The message could not be stored")
            return
        if not stored:
            log.info("Offline storage of {user} is full", user=to.full())
            event.error("service-unavailable", "The recipient's offline message storage is full")
            return
        self.stored += 1
        if self.ctx.hooks.has("offline/stored"):
            self.ctx.hooks.fire("offline/stored", StoredOffline(to, stamped, unacked_by))

    # -- delivering ------------------------------------------------------------------------

    def session_available(self, session: BoundSession) -> None:
        """*session* just became available with a non-negative priority: deliver
        what was stored for its user.  Called synchronously by the presence module."""
        if self.quota <= 0:
            return
        bare = session.bare
        flush = self._flushing.get(bare)
        if flush is not None:
            flush.waiting.append(session)  # takes over if the one being served goes
            return
        flush = self._flushing[bare] = _Flush()
        Deferred.fromCoroutine(self._flush(session, bare, flush)).addErrback(
            lambda f: log.failure("Delivering offline messages failed", f))

    async def _flush(self, session: BoundSession | None, bare: JID, flush: _Flush) -> None:
        try:
            while session is not None:
                if await self._deliver_stored(session, bare, flush):
                    break
                # The session went before everything was sent: what it was sent
                # settles first, so that the next session does not get it again.
                if flush.pending:
                    await DeferredList(list(flush.pending))
                session = self._next_session(flush)
        finally:
            del self._flushing[bare]
            for after in flush.held:
                after.callback(False)

    async def _deliver_stored(self, session: BoundSession, bare: JID, flush: _Flush) -> bool:
        """Send *bare*'s stored messages to *session*, oldest first, a page at a
        time and as fast as the session takes them; True when all were sent,
        False when the session stopped being a destination first."""
        limits = self.ctx.config.limits
        after = 0
        while True:
            try:
                rows = await self.ctx.storage.offline.read(bare.user, bare.host, after, READ_BATCH)
            except StorageError as e:
                log.error("Could not read the offline messages of {user}: {error}", user=bare.full(),
                          error=str(e))
                return True  # still stored: the next login tries again
            if not rows:
                return True
            done = self._delivered_ids.get(bare, set())
            for row_id, text in rows:
                after = row_id
                if row_id in done:
                    continue  # delivered, its deletion under way
                message = parse_stanza(text, limits.max_stanza_size * 2, limits.max_depth + 2)
                if message is None:
                    log.error("Dropped an unreadable offline message of {user}", user=bare.full())
                    self._delivered(True, bare, row_id)
                    continue
                if not await session.ready() or not self._current(session):
                    return False
                receipt = session.send_tracked(message)
                flush.pending.add(receipt)
                receipt.addCallback(self._delivered, bare, row_id)
                receipt.addBoth(_forget, flush.pending, receipt)

    def _current(self, session: BoundSession) -> bool:
        return self.ctx.sessions.get(session.address) is session and session.available

    def _next_session(self, flush: _Flush) -> BoundSession | None:
        while flush.waiting:
            session = flush.waiting.pop(0)
            if self._current(session) and session.priority >= 0:
                return session
        return None

    def _delivered(self, delivered: bool, bare: JID, row_id: int) -> None:
        """A stored message reached its client (or can never be read): delete it.
        Deletions are batched, one transaction at a time per user."""
        if not delivered:
            return  # stays stored, for the next login
        self.delivered += 1
        self._delivered_ids.setdefault(bare, set()).add(row_id)
        self._to_delete.setdefault(bare, []).append(row_id)
        if bare not in self._deleting:
            self._deleting.add(bare)
            Deferred.fromCoroutine(self._delete(bare)).addErrback(
                lambda f: log.failure("Deleting delivered offline messages failed", f))

    async def _delete(self, bare: JID) -> None:
        try:
            while ids := self._to_delete.pop(bare, None):
                try:
                    await self.ctx.storage.offline.delete(bare.user, bare.host, ids)
                except StorageError as e:
                    log.error("Could not delete {n} delivered offline messages of {user}, which will come "
                              "again: {error}", n=len(ids), user=bare.full(), error=str(e))
                done = self._delivered_ids.get(bare)
                if done is not None:
                    done.difference_update(ids)
                    if not done:
                        del self._delivered_ids[bare]
        finally:
            self._deleting.discard(bare)


def _only_chat_state(stanza: domish.Element) -> bool:
    children = list(stanza.elements())
    return bool(children) and all(c.uri == CHATSTATES for c in children)


def _stamp(seconds: float) -> str:
    """A XEP-0082 DateTime in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _copy(stanza: domish.Element) -> domish.Element:
    el = domish.Element((stanza.uri, stanza.name), attribs=dict(stanza.attributes))
    el.children = list(stanza.children)
    return el


def _forget(_: object, pending: set[Deferred[bool]], receipt: Deferred[bool]) -> None:
    pending.discard(receipt)
