"""Stream management for client sessions (XEP-0198): acks, resumption, hibernation.

The ``<sm xmlns='urn:xmpp:sm:3'/>`` feature is offered with resource binding.
After binding, ``<enable/>`` gives the session a :class:`ManagedSession`, and from
then on:

* every stanza the client sends is counted (``h``, modulo 2**32) and ``<r/>`` is
  answered with ``<a h='...'/>`` once every stanza it counts is *settled*
  (delivered, committed to storage or bounced, see :mod:`fedxmpp.router`), in
  order: what the server acknowledges survives a crash;
* every stanza the session sends is counted and kept, in order, until the
  client's ``<a h='...'/>`` covers it.  The server asks with ``<r/>`` once
  ``[c2s] sm_ack_request_every`` stanzas were sent since it last asked, or
  ``sm_ack_request_delay`` seconds after the first unacknowledged one.  The
  queue holds at most ``sm_max_queue`` stanzas: one more closes the stream with
  ``<resource-constraint/>`` and the queue is handled as below, at once;
* with ``resume='true'`` (and ``sm_resume_timeout`` > 0) the ``<enabled/>``
  answer carries an unguessable id.  If the connection then breaks — no closing
  tag from the client, no stream error from us other than an idle
  ``<connection-timeout/>`` — the session *hibernates*: it stays bound (same full
  JID, priority and presence; contacts see nothing), what is sent to it is
  queued — and committed to storage (``sm_pending``) before it counts as settled,
  with what was unacknowledged when the connection broke — and a new stream of
  the same user may send ``<resume previd h/>``
  instead of binding.  It then gets ``<resumed/>`` and every stanza not covered
  by its ``h``, in order, and carries on as the same session (as an active
  client, XEP-0352).  If the old stream is still open it is closed with
  ``<conflict/>``.

Whenever the server ends an SM stream — a stream error (``<system-shutdown/>`` on
SIGTERM included) or its answer to the client's closing tag — it first sends a
last ``<a h='...'/>`` (XEP-0198 §4, the graceful-close ack), so that the client
knows which of its stanzas the server handled and resends none of them.

A session that ends for good (closed by the client, replaced by a new binding of
its resource, closed with a stream error, or not resumed in time) deals with the
stanzas its client never acknowledged as the XEP asks: as stanzas sent to an
unavailable resource — with one exception.  When the client closed its stream
itself (``</stream:stream>``), a message that the user's archive holds (it
carries the archive's XEP-0359 ``<stanza-id by='user@domain'/>``) counts as
handled: the client ended the session knowingly, after every stanza written
before its closing tag reached it in order, and should it have missed one, the
archive, where clients catch up (XEP-0313), has it.  Storing it offline as well
would show it twice at the next login.  Everything else a client did not
acknowledge goes on as below: messages the archive does not hold, and all of
them when the connection broke without a closing tag (at-least-once: a client
that did not acknowledge may see a message again; the copy keeps its stanza-id
and its original ``<delay/>``, by which clients recognise it).
Each is offered to the ``"c2s/unacked"`` hook as
``(session, stanza)`` — offline storage (:mod:`fedxmpp.im.offline`) takes chat and
normal messages — and what nobody takes is answered with
``<service-unavailable/>`` (RFC 6121 §8.5.3): iq requests and the remaining
messages.  Presence is dropped (subscription requests stay pending in the
roster and are sent again at the next login), and so are headlines, which are
ephemeral (RFC 6121 §8.5.3.2.1), and errors and results.  Stanzas sent with
:meth:`ManagedSession.send_tracked` (stored offline messages) are not offered:
their sender learns they were not acknowledged and still has them.

A server that died (SIGKILL, power) while sessions hibernated finds their
stored stanzas when it starts again (:meth:`StreamManagement.recover`) and
handles them as for sessions that ended for good, as above.  Resumption itself
does not survive a restart: it would need the session's whole state (the
bound resource, presence, counters, what carbons and CSI held) to be durable
too; the client binds again and gets the stored messages from offline storage.

A resume id that is unknown, expired or not the authenticated user's gets
``<failed><item-not-found/></failed>`` and the client may bind instead; for an
id of this user that expired recently ``<failed/>`` carries the ``h`` the
session had reached (XEP-0198 §5).
"""

from __future__ import annotations

import base64
import math
import os
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.hooks import PolicyFailed
from fedxmpp.router import Settled, all_settled
from fedxmpp.storage.sm_pending import PendingStanza
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError
from fedxmpp.xml.jid import JID, InvalidJID
from fedxmpp.xml.parser import parse_stanza
from fedxmpp.xml.serialize import serialize

if TYPE_CHECKING:
    from fedxmpp.c2s.context import C2SContext
    from fedxmpp.c2s.session import ClientSession
    from fedxmpp.stream.xmlstream import ServerStream

log = Logger()

NS = "urn:xmpp:sm:3"
SID = "urn:xmpp:sid:0"
MASK = 0xFFFFFFFF  # h and the send count wrap at 2**32
# Expired resume ids remembered, with their last h, for <failed h='...'/>.
EXPIRED_IDS = 10_000


class HandledCountTooHigh(StreamError):
    """The peer acknowledged more stanzas than it was sent (XEP-0198 §4)."""

    def __init__(self, h: int, sent: int) -> None:
        super().__init__("undefined-condition", f"You acknowledged {h} stanzas; {sent} were sent")
        self.h = h
        self.sent = sent

    def to_element(self) -> domish.Element:
        el = super().to_element()
        app = el.addElement((NS, "handled-count-too-high"))
        app["h"] = str(self.h)
        app["send-count"] = str(self.sent)
        return el


class StreamManagement:
    """XEP-0198 for the process: the feature, the nonzas, the resumable sessions."""

    def __init__(self, ctx: C2SContext) -> None:
        self.ctx = ctx
        self.clock = ctx.clock
        self._resumable: dict[str, ManagedSession] = {}
        self._expired: OrderedDict[str, tuple[JID, int]] = OrderedDict()
        #: fedxmpp.storage.PendingStore once storage is open (None: kept in memory only).
        self.store: Any = None
        #: Writes to it not finished yet (shutdown waits for them).
        self._writes: set[Deferred[Any]] = set()
        ctx.hooks.add("c2s/features", self._features)
        ctx.hooks.add("c2s/nonza", self._nonza)
        ctx.hooks.add("storage/flush", lambda _: DeferredList(list(self._writes)))

    @property
    def hibernating(self) -> list[ManagedSession]:
        return [m for m in self._resumable.values() if m.hibernating]

    # -- negotiation ---------------------------------------------------------------------

    def _features(self, features: domish.Element) -> None:
        features.addElement((NS, "sm"))

    def before_bind(self, stream: ServerStream, element: domish.Element, user: JID) -> ClientSession | None:
        """An element of this namespace on an authenticated stream that has not
        bound a resource yet: ``<resume/>`` (the resumed session is returned, and
        now belongs to *stream*) or a ``<failed/>`` answer."""
        if element.name != "resume":
            _failed(stream, "unexpected-request", "Bind a resource first")
            return None
        previd = element.getAttribute("previd", "")
        managed = self._resumable.get(previd)
        if managed is None or managed.session.bare != user or managed.closed or managed.session.replaced:
            gone = self._expired.get(previd)
            h = gone[1] if gone is not None and gone[0] == user else None
            _failed(stream, "item-not-found", "No session to resume with this id", h=h)
            return None
        h = _counter(element)
        if h is None:
            _failed(stream, "bad-request", "'h' must be a number from 0 to 4294967295")
            return None
        if not managed.covers(h):
            stream.fail(HandledCountTooHigh(h, managed.sent))
            return None
        managed.resume(stream, h)
        return managed.session

    # -- nonzas on a bound stream ----------------------------------------------------------

    def _nonza(self, payload: tuple[ClientSession, domish.Element]) -> bool:
        session, element = payload
        if element.uri != NS:
            return False
        managed, name = session.sm, element.name
        if name == "enable":
            if managed is not None:
                _failed(session.stream, "unexpected-request", "Stream management is already enabled")
            else:
                self._enable(session, element)
        elif name == "resume":
            _failed(session.stream, "unexpected-request", "This stream has a session already")
        elif name not in ("r", "a"):
            return False  # not a nonza of ours: <unsupported-stanza-type/>
        elif managed is None:
            _failed(session.stream, "unexpected-request", "Enable stream management first")
        elif name == "r":
            managed.ack_requested()
        else:
            managed.ack_received(element)
        return True

    def _enable(self, session: ClientSession, element: domish.Element) -> None:
        cfg = self.ctx.config.c2s
        timeout = cfg.sm_resume_timeout
        wanted = _counter(element, "max")
        if wanted:  # the client's preferred maximum, if lower
            timeout = min(timeout, float(wanted))
        resume_id = None
        if element.getAttribute("resume") in ("true", "1") and timeout > 0:
            resume_id = base64.urlsafe_b64encode(os.urandom(18)).decode()
        managed = ManagedSession(self, session, resume_id, timeout)
        session.sm = managed
        enabled = domish.Element((NS, "enabled"))
        if resume_id is not None:
            self._resumable[resume_id] = managed
            enabled["id"] = resume_id
            enabled["resume"] = "true"
            enabled["max"] = str(max(1, math.ceil(timeout)))
        session.stream.send(enabled)

    # -- the end of sessions -------------------------------------------------------------------

    def forget(self, managed: ManagedSession) -> None:
        """*managed* can no longer be resumed; remember its last h for a while."""
        rid = managed.resume_id
        if rid is None or self._resumable.get(rid) is not managed:
            return
        del self._resumable[rid]
        self._expired[rid] = (managed.session.bare, managed.h_in)
        while len(self._expired) > EXPIRED_IDS:
            self._expired.popitem(last=False)

    def undelivered(self, session: Any, stanza: domish.Element, *, closed_by_client: bool = False) -> Settled:
        """A stanza *session*'s client never acknowledged, and never will; when it
        is stored elsewhere or bounced.  *closed_by_client* when its client ended
        the session with its closing tag after the stanza was written."""
        if closed_by_client and archived_for(stanza, session.bare):
            return None
        try:
            taken = self.ctx.hooks.run("c2s/unacked", (session, stanza))
        except PolicyFailed:
            taken = False
        if isinstance(taken, Deferred):
            return taken.addCallback(lambda t: None if t else self._bounce(session, stanza))
        if not taken:
            self._bounce(session, stanza)
        return None

    def _bounce(self, session: Any, stanza: domish.Element) -> None:
        stype = stanza.getAttribute("type")
        if stanza.name == "presence" or stype in ("error", "result") or (
                stanza.name == "message" and stype == "headline"):
            return
        try:
            frm = JID.parse(stanza.getAttribute("from", ""))
        except InvalidJID:
            return
        self.ctx.router.bounce(stanza, frm, session.address,
                               StanzaError("service-unavailable", "The recipient's connection was lost"))

    # -- what hibernating sessions hold, in storage ---------------------------------------------

    def keep(self, managed: ManagedSession, stanzas: list[domish.Element]) -> Settled:
        """Commit *stanzas*, queued for hibernating *managed*; when they are."""
        if self.store is None or managed.resume_id is None or not stanzas:
            return None
        address = managed.session.address
        rows = [PendingStanza(managed.resume_id, address.user or "", address.host, address.resource or "",
                              serialize(s, ns.CLIENT)) for s in stanzas]
        return self._track(self.store.add(rows), "Storing stanzas of a hibernating session")

    def discard(self, managed: ManagedSession, after: Settled = None) -> None:
        """Forget the stored stanzas of *managed* (once *after* has fired)."""
        rid = managed.resume_id
        if self.store is None or rid is None or not managed.stored:
            return
        managed.stored = False
        store = self.store
        if after is None:
            self._track(store.remove(rid), "Forgetting stanzas of a hibernating session")
        else:
            self._track(after.addCallback(lambda _: Deferred.fromCoroutine(store.remove(rid))),
                        "Forgetting stanzas of a hibernating session")

    def _track(self, work: Any, what: str) -> Deferred[None]:
        d = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)
        d.addErrback(lambda f: log.failure("{what} failed", f, what=what))
        self._writes.add(d)
        d.addBoth(lambda r: self._writes.discard(d))
        return d

    async def recover(self) -> int:
        """At start-up: what hibernating sessions held when the server last died
        goes where it would have gone had they ended (offline storage, errors to
        senders); how many stanzas."""
        if self.store is None:
            return 0
        rows = await self.store.all()
        by_session: dict[str, list[PendingStanza]] = {}
        for row in rows:
            by_session.setdefault(row.resume_id, []).append(row)
        limits = self.ctx.config.limits
        for resume_id, held in by_session.items():
            first = held[0]
            gone = _GoneSession(JID(first.user, first.domain, first.resource or None))
            outcomes = []
            for row in held:
                stanza = parse_stanza(row.stanza, limits.max_stanza_size * 2, limits.max_depth + 2)
                if stanza is None:
                    log.error("Dropped an unreadable stored stanza of {jid}", jid=gone.address.full())
                    continue
                outcome = self.undelivered(gone, stanza)
                if outcome is not None:
                    outcomes.append(outcome)
            if outcomes:
                await DeferredList(outcomes)
            await self.store.remove(resume_id)
            log.info("{jid} hibernated when the server stopped: {n} stanzas handled as for a session "
                     "that ended", jid=gone.address.full(), n=len(held))
        return len(rows)

    def shutdown(self) -> None:
        """The server stops: end the hibernating sessions now, so that what they
        hold reaches offline storage (or its senders) while storage is open."""
        for managed in self.hibernating:
            managed.end_hibernation(now=True)


class ManagedSession:
    """The XEP-0198 state of one client session, across the streams it resumes on."""

    def __init__(self, manager: StreamManagement, session: ClientSession, resume_id: str | None,
                 timeout: float) -> None:
        cfg = manager.ctx.config.c2s
        self.manager = manager
        self.session = session
        self.resume_id = resume_id
        self.timeout = timeout
        self.max_queue = cfg.sm_max_queue
        self.ack_every = cfg.sm_ack_request_every
        self.ack_delay = cfg.sm_ack_request_delay
        self.max_ack_delay = cfg.sm_max_ack_delay
        #: Stanzas handled from the client (its h), stanzas sent to it, and the
        #: last h it acknowledged; all modulo 2**32.
        self.h_in = 0
        self.sent = 0
        self.acked = 0
        #: Sent and not acknowledged, oldest first: stanza number acked+1 is queue[0].
        self.queue: deque[domish.Element] = deque()
        #: How many of the newest in the queue were never written to a stream
        #: (queued while hibernating, or after the stream had closed).
        self.unwritten = 0
        self.hibernating = False
        #: Whether stanzas of this session are in the store (see StreamManagement.keep).
        self.stored = False
        #: Over: nothing is queued any more (overflow, or the session finished).
        self.closed = False
        self._awaiting_ack = False
        self._since_request = 0
        self._ack_call: Any = None
        self._overdue_call: Any = None
        self._expiry: Any = None
        session.stream.before_close = self.final_ack
        #: Stanzas whose sender wants to know whether they were acknowledged
        #: (offline messages, which stay stored until then); see send_tracked.
        self._receipts: dict[domish.Element, Deferred[bool]] = {}
        #: The session's stanzas counted before stream management was enabled.
        self._counted_before = session.settlement.received
        self._watchers: list[Deferred[None]] = []

    # -- stanzas ------------------------------------------------------------------------------

    def received(self) -> None:
        """The client sent a stanza (counted whatever becomes of it)."""
        self.h_in = (self.h_in + 1) & MASK

    def send(self, stanza: domish.Element) -> Settled:
        if self.closed:
            return self.manager.undelivered(self.session, stanza)
        self.queue.append(stanza)
        self.sent = (self.sent + 1) & MASK
        if len(self.queue) > self.max_queue:
            self._overflow()
            return None
        if self.hibernating:
            self.unwritten += 1
            if stanza in self._receipts:
                return None  # a stored offline message being delivered: still stored there
            self.stored = True
            return self.manager.keep(self, [stanza])
        if self.session.stream.closed:
            self.unwritten += 1
            return None
        self.session.stream.send(stanza)
        if self._awaiting_ack:
            return None
        self._since_request += 1
        if self._since_request >= self.ack_every:
            self._request_ack()
        elif self._ack_call is None and self.ack_delay:
            self._ack_call = self.manager.clock.callLater(self.ack_delay, self._ack_timer)
        return None

    def send_tracked(self, stanza: domish.Element) -> Deferred[bool]:
        """Send *stanza*; True once the client's ``<a h/>`` covers it, False if the
        session ends first.  Either way it is not offered to ``c2s/unacked``: the
        caller still holds it."""
        receipt: Deferred[bool] = Deferred()
        if self.closed:
            receipt.callback(False)
            return receipt
        self._receipts[stanza] = receipt
        self.send(stanza)
        return receipt

    def window_full(self) -> bool:
        """Whether a bulk sender should wait for acks: half the queue is in use."""
        return len(self.queue) >= max(1, self.max_queue // 2)

    def changed(self) -> Deferred[None]:
        """Fires at the next ack, resumption or end of the session."""
        d: Deferred[None] = Deferred()
        if self.closed:
            d.callback(None)
        else:
            self._watchers.append(d)
        return d

    def _notify(self) -> None:
        watchers, self._watchers = self._watchers, []
        for d in watchers:
            d.callback(None)

    # -- acks -----------------------------------------------------------------------------------

    def ack_requested(self) -> None:
        """Answer with the count so far, once those stanzas are all settled."""
        h, stream = self.h_in, self.session.stream
        settlement = self.session.settlement
        if settlement.settled < settlement.received:
            # Writes batched for throughput need not wait for their delay now.
            self.manager.ctx.hooks.fire("storage/hurry")
        settlement.when(settlement.received, lambda: self._ack(stream, h))

    def _ack(self, stream: ServerStream, h: int) -> None:
        if self.session.stream is stream and not stream.closed:
            stream.write(f"<a xmlns='{NS}' h='{h}'/>")

    def final_ack(self) -> None:
        """The stream is about to end (our closing tag or stream error): tell the
        client how many of its stanzas were handled and settled, at once (there is
        no later), so it resends none of those and loses none of the others."""
        if self.hibernating:
            return
        settlement = self.session.settlement
        # Stanzas from before <enable/> are not in h: never count below zero.
        unsettled = min(settlement.pending, settlement.received - self._counted_before)
        h = (self.h_in - unsettled) & MASK
        self.session.stream.write(f"<a xmlns='{NS}' h='{h}'/>")

    def ack_received(self, element: domish.Element) -> None:
        h = _counter(element)
        if h is None:
            self.session.stream.fail(StreamError("invalid-xml", "'h' must be a number from 0 to 4294967295"))
            return
        if not self.covers(h):
            self.session.stream.fail(HandledCountTooHigh(h, self.sent))
            return
        self._release(h)
        self._awaiting_ack = False
        self._cancel_overdue_call()
        if self.queue and self._ack_call is None and self.ack_delay:
            self._ack_call = self.manager.clock.callLater(self.ack_delay, self._ack_timer)
        self._notify()

    def covers(self, h: int) -> bool:
        """Whether *h* acknowledges no more stanzas than were sent."""
        return (h - self.acked) & MASK <= len(self.queue)

    def _release(self, h: int) -> None:
        for _ in range((h - self.acked) & MASK):
            stanza = self.queue.popleft()
            receipt = self._receipts.pop(stanza, None) if self._receipts else None
            if receipt is not None:
                receipt.callback(True)
        self.acked = h
        self.unwritten = min(self.unwritten, len(self.queue))

    def _request_ack(self) -> None:
        self._cancel_ack_call()
        self._awaiting_ack = True
        self._since_request = 0
        self.session.stream.write(f"<r xmlns='{NS}'/>")
        if self.max_ack_delay and self._overdue_call is None:
            self._overdue_call = self.manager.clock.callLater(self.max_ack_delay, self._ack_overdue)

    def _ack_overdue(self) -> None:
        """No answer to <r/>: the link is dead though TCP has not noticed.  Drop it as
        broken, so that the session hibernates and the client can resume."""
        self._overdue_call = None
        stream = self.session.stream
        if self.hibernating or self.closed or stream.closed:
            return
        log.info("No acknowledgement from {jid} in {delay:.0f} s: the connection is taken for dead",
                 jid=self.session.address.full(), delay=self.max_ack_delay)
        stream.abort()

    def _cancel_overdue_call(self) -> None:
        if self._overdue_call is not None and self._overdue_call.active():
            self._overdue_call.cancel()
        self._overdue_call = None

    def _ack_timer(self) -> None:
        self._ack_call = None
        if self.queue and not self._awaiting_ack and not self.hibernating and not self.closed:
            self._request_ack()

    def _cancel_ack_call(self) -> None:
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()
        self._ack_call = None

    # -- hibernation and resumption ---------------------------------------------------------------

    def hibernate(self) -> bool:
        """The session's stream is gone; True if the session stays, resumable."""
        reason = self.session.stream.close_reason
        if (self.resume_id is None or self.closed or self.session.replaced
                or reason not in (None, "connection-timeout")):
            return False
        self.hibernating = True
        self._awaiting_ack = False
        self._cancel_ack_call()
        self._cancel_overdue_call()
        self._expiry = self.manager.clock.callLater(self.timeout, self._expired)
        # Stored offline messages being delivered (send_tracked) are still in the
        # offline store: keeping them here too would deliver them twice after a crash.
        kept = [stanza for stanza in self.queue if stanza not in self._receipts]
        if kept:
            self.stored = True
            self.manager.keep(self, kept)
        log.info("Hibernating {jid}: resumable for {timeout:.0f} s, {n} stanzas unacknowledged",
                 jid=self.session.address.full(), timeout=self.timeout, n=len(self.queue))
        return True

    def _expired(self) -> None:
        self._expiry = None
        self.hibernating = False
        log.info("{jid} was not resumed in time; {n} stanzas unacknowledged",
                 jid=self.session.address.full(), n=len(self.queue))
        self.session.finish()

    def close_hibernating(self) -> bool:
        """The session is being closed (replaced by a new binding of its resource,
        or the server stops); True if it was hibernating and so is now ending."""
        if not self.hibernating:
            return False
        self.end_hibernation(now=False)
        return True

    def end_hibernation(self, *, now: bool) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.hibernating = False
        self.manager.forget(self)
        if now:
            self.session.finish()
        else:
            # After the caller is done: a new session binding this resource takes
            # the address before this one's end is announced.
            self.manager.clock.callLater(0, self.session.finish)

    def resume(self, stream: ServerStream, h: int) -> None:
        """Carry on on *stream*: acknowledge up to *h* and send the rest again."""
        session = self.session
        old = session.stream
        if old is not stream:
            # The old stream's end is no longer this session's end.
            old.handler.session = None  # type: ignore[attr-defined]
            old.before_close = None
            old.fail(StreamError("conflict", "The session was resumed on another connection"))
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.hibernating = False
        self._release(h)
        session.stream = stream
        stream.before_close = self.final_ack
        self.manager.discard(self)
        resumed = domish.Element((NS, "resumed"))
        resumed["previd"] = self.resume_id or ""
        resumed["h"] = str(self.h_in)
        stream.send(resumed)
        for stanza in self.queue:
            stream.send(stanza)
        self.unwritten = 0
        self._awaiting_ack = False
        self._since_request = 0
        # XEP-0352 §5: a resumed stream starts active; what was held (all newer
        # than the queue, or it would have been released) follows it now.
        held, session.csi = session.csi, None
        if held is not None:
            held.flush()
        if self.queue:
            self._request_ack()
        log.info("Resumed {jid}, {n} stanzas sent again", jid=session.address.full(), n=len(self.queue))
        self._notify()

    # -- the end ----------------------------------------------------------------------------------

    def _overflow(self) -> None:
        log.info("Closing {jid}: more than {max} stanzas unacknowledged", jid=self.session.address.full(),
                 max=self.max_queue)
        self.closed = True
        self.manager.forget(self)
        self._drain()
        if self.hibernating:
            self.end_hibernation(now=False)
        else:
            self.session.stream.fail(StreamError("resource-constraint", "Too many unacknowledged stanzas"))

    def finished(self) -> None:
        """The session is over: what the client never acknowledged goes elsewhere."""
        self.closed = True
        self._cancel_ack_call()
        self._cancel_overdue_call()
        self.manager.forget(self)
        closed_by_client = self.session.stream.close_reason == "peer"
        if self.queue:
            log.info("Session of {jid} ended ({how}) with {n} stanzas unacknowledged",
                     jid=self.session.address.full(), n=len(self.queue),
                     how="closed by the client" if closed_by_client else "not closed by the client")
        self._drain(closed_by_client=closed_by_client)

    def _drain(self, *, closed_by_client: bool = False) -> None:
        queue, self.queue = self.queue, deque()
        # Only what reached the stream before it closed can have been seen.
        written, self.unwritten = len(queue) - self.unwritten, 0
        outcomes: list[Deferred[Any]] = []
        for i, stanza in enumerate(queue):
            seen = closed_by_client and i < written
            receipt = self._receipts.pop(stanza, None)
            if receipt is not None:
                # Its sender still has it, and keeps it unless the rule below counts it handled.
                receipt.callback(seen and archived_for(stanza, self.session.bare))
                continue
            outcome = self.manager.undelivered(self.session, stanza, closed_by_client=seen)
            if outcome is not None:
                outcomes.append(outcome)
        # The stored copies go once the stanzas are stored elsewhere or bounced.
        self.manager.discard(self, all_settled(outcomes))
        self._notify()


def archived_for(stanza: domish.Element, user: JID) -> bool:
    """Whether *stanza* is a message that *user*'s archive holds: it carries the
    archive's XEP-0359 stanza-id (the archive removes forged ones on arrival)."""
    if stanza.name != "message":
        return False
    by = user.full()
    return any(getattr(c, "uri", None) == SID and c.name == "stanza-id" and c.getAttribute("by") == by
               for c in stanza.elements())


class _GoneSession:
    """What stands for a session that hibernated when the server died."""

    def __init__(self, address: JID) -> None:
        self.address = address
        self.bare = address.bare


def _failed(stream: ServerStream, condition: str, text: str | None, h: int | None = None) -> None:
    failed = domish.Element((NS, "failed"))
    if h is not None:
        failed["h"] = str(h)
    failed.addElement((ns.STANZA_ERRORS, condition))
    if text:
        failed.addElement((ns.STANZA_ERRORS, "text"), content=text)
    stream.send(failed)


def _counter(element: domish.Element, name: str = "h") -> int | None:
    """An unsigned 32-bit attribute; None if absent or not one."""
    text = element.getAttribute(name)
    if text is None or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value <= MASK else None
