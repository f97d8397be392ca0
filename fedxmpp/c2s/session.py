"""A bound client session: checks and stamps what the client sends, then routes it.

What is sent to the client passes client state indication (``csi``, XEP-0352,
:mod:`fedxmpp.c2s.csi`) and, once the client enables it, stream management
(``sm``, XEP-0198, :mod:`fedxmpp.c2s.sm`), which may keep the session bound
after its stream is gone until the client resumes it on a new one.

What the client sends is routed; the router says when each stanza is settled
(:mod:`fedxmpp.router`), and :attr:`ClientSession.settlement` counts them in
order: stream management acknowledges only settled stanzas, and while more than
:data:`MAX_UNSETTLED` of the client's stanzas wait for storage to commit, its
connection is not read (backpressure; reading resumes below half of it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.c2s.settlement import InOrder
from fedxmpp.router import Settled
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from fedxmpp.c2s.csi import HeldUpdates
    from fedxmpp.c2s.context import C2SContext
    from fedxmpp.c2s.sm import ManagedSession
    from fedxmpp.stream.xmlstream import ServerStream

log = Logger()

STANZAS = frozenset({"message", "presence", "iq"})
# Without stream management, tracked stanzas are confirmed a window at a time:
# at most this many bytes wait for Twisted to pass them on (below its 64 KiB buffer).
TRACKED_WINDOW = 32 * 1024
IQ_TYPES = frozenset({"get", "set", "result", "error"})
# A client's stanzas that may wait for storage before its connection is paused.
MAX_UNSETTLED = 1000


class ClientSession:
    """The :class:`~fedxmpp.session.Session` of a client with a bound resource."""

    kind = "c2s"

    def __init__(self, stream: ServerStream, ctx: C2SContext, bare: JID) -> None:
        self.stream = stream
        self.ctx = ctx
        self.bare = bare
        self.address = bare  # the full JID once bound
        # RFC 6121 availability: set by the client's undirected presence.
        self.available = False
        self.priority = 0
        self.presence: domish.Element | None = None
        self.replaced = False
        # XEP-0198 state once the client enables stream management (fedxmpp.c2s.sm).
        self.sm: ManagedSession | None = None
        # XEP-0352: what is held back while the client is inactive (fedxmpp.c2s.csi).
        self.csi: HeldUpdates | None = None
        #: The session has ended for good (finish()).
        self.over = False
        self._window: _Window | None = None
        #: The client's stanzas, settled in order (acks and backpressure).
        self.settlement = InOrder(self._unsettled)
        self._holding: ServerStream | None = None

    # -- Session ------------------------------------------------------------------

    def send(self, stanza: domish.Element) -> Settled:
        if self.csi is not None and self.csi.hold(stanza):
            return None
        return self.transmit(stanza)

    def transmit(self, stanza: domish.Element) -> Settled:
        """Past client state indication: onto the stream, counted and kept until
        acknowledged under stream management (settled once written, or once
        stored for a hibernating session)."""
        if self.sm is not None:
            return self.sm.send(stanza)
        self.stream.send(stanza)
        return None

    # -- paced delivery: stanzas whose sender needs to know they arrived --------------

    def send_tracked(self, stanza: domish.Element) -> Deferred[bool]:
        """Send *stanza* (after what client state indication holds); the Deferred
        says whether it was delivered, and False means the caller still owns it.

        Delivered means: under stream management, covered by the client's
        ``<a h/>``; without, written on a connection that stayed open until
        Twisted passed the bytes on (:meth:`ServerStream.flushed`).
        """
        if self.over or (self.sm is None and self.stream.closed):
            return succeed(False)
        if self.csi is not None and len(self.csi):
            self.csi.flush()
        if self.sm is not None:
            return self.sm.send_tracked(stanza)
        before = self.stream.bytes_out
        self.stream.send(stanza)
        window = self._window
        if window is None:
            window = self._window = _Window()
            self.stream.flushed().addCallback(self._window_flushed, window)
        window.size += self.stream.bytes_out - before
        receipt: Deferred[bool] = Deferred()
        window.receipts.append(receipt)
        return receipt

    def _window_flushed(self, flushed: bool, window: _Window) -> None:
        if self._window is window:
            self._window = None
        for receipt in window.receipts:
            receipt.callback(flushed)
        for waiter in window.waiters:
            waiter.callback(None)

    def ready(self) -> Deferred[bool]:
        """True once the session can take another tracked stanza without queueing
        past its connection's buffer or half its stream management queue (waiting
        through a hibernation); False when it is no longer a destination."""
        return Deferred.fromCoroutine(self._ready())

    async def _ready(self) -> bool:
        while not self.over:
            sm = self.sm
            if sm is not None and sm.closed:
                return False
            if sm is not None and (sm.hibernating or sm.window_full()):
                await sm.changed()
            elif self.stream.closed:
                return False
            elif self._window is not None and self._window.size >= TRACKED_WINDOW:
                waiter: Deferred[None] = Deferred()
                self._window.waiters.append(waiter)
                await waiter
            elif self.stream.paused:
                await self.stream.writable()
            else:
                return True
        return False

    def close(self, error: StreamError | None = None) -> None:
        if self.sm is not None and self.sm.close_hibernating():
            return
        if error is not None:
            self.stream.fail(error)
        else:
            self.stream.close()

    # -- from the client ------------------------------------------------------------

    def element_received(self, element: domish.Element) -> None:
        if element.uri != ns.CLIENT or element.name not in STANZAS:
            if not self.ctx.hooks.fire("c2s/nonza", (self, element)):
                self.stream.fail(StreamError("unsupported-stanza-type", f"<{element.name}/> is not a stanza"))
            return
        if self.sm is not None:
            self.sm.received()
        self.settlement.add(self._route(element))

    def _unsettled(self, pending: int) -> None:
        if self._holding is None:
            if pending > MAX_UNSETTLED:
                self._holding = self.stream
                self.stream.hold_reading(True)
        elif pending <= MAX_UNSETTLED // 2:
            held, self._holding = self._holding, None
            held.hold_reading(False)

    def _route(self, element: domish.Element) -> Settled:
        """Check and stamp a stanza, then route it; when it is settled."""
        stype = element.getAttribute("type")
        frm = element.getAttribute("from")
        if frm is not None and frm != self.address._full:
            try:
                claimed = JID.parse(frm)
            except InvalidJID:
                claimed = None
            if claimed != self.address and claimed != self.bare:
                self.stream.fail(StreamError("invalid-from", "'from' must be your own address"))
                return None
        element["from"] = self.address._full

        to_attr = element.getAttribute("to")
        if to_attr is None:
            to = self.bare
        else:
            try:
                to = JID.parse(to_attr)
            except InvalidJID:
                self._reject(element, StanzaError("jid-malformed", "'to' is not a valid address"))
                return None

        if element.name == "iq":
            if not self._valid_iq(element, stype):
                return None
            if stype == "set" and (to_attr is None or to == self.bare.domain) and _legacy_session(element):
                self._reply_result(element)
                return None
        return self.ctx.router.route(element, self.address, to)

    def _valid_iq(self, element: domish.Element, stype: str | None) -> bool:
        if stype not in IQ_TYPES or not element.getAttribute("id"):
            self._reject(element, StanzaError("bad-request", "An iq needs an 'id' and a valid 'type'"))
            return False
        if stype in ("get", "set"):
            payload = [c for c in element.elements()]
            if len(payload) != 1:
                self._reject(element, StanzaError("bad-request", "An iq request carries exactly one payload"))
                return False
        return True

    def _reject(self, element: domish.Element, error: StanzaError) -> None:
        if element.getAttribute("type") == "error":
            return
        reply = error_reply(element, error)
        reply["to"] = self.address._full
        if "from" in reply.attributes and element.getAttribute("to") is None:
            del reply["from"]
        self.send(reply)

    def _reply_result(self, element: domish.Element) -> None:
        result = domish.Element((ns.CLIENT, "iq"))
        result["type"] = "result"
        result["id"] = element["id"]
        result["to"] = self.address._full
        self.send(result)

    # -- lifecycle ----------------------------------------------------------------------

    def ended(self) -> None:
        """The stream is gone: leave the session table and tell the features,
        unless stream management keeps the session for the client to resume."""
        if self.sm is not None and self.sm.hibernate():
            return
        self.finish()

    def finish(self) -> None:
        """The session is over: leave the session table, tell the features, and
        deal with what the client never acknowledged."""
        self.over = True
        self.ctx.sessions.unbind(self)
        self.ctx.hooks.fire("c2s/session-ended", self)
        if self.sm is not None:
            self.sm.finished()


class _Window:
    """Tracked stanzas written in one reactor turn, confirmed together."""

    __slots__ = ("size", "receipts", "waiters")

    def __init__(self) -> None:
        self.size = 0
        self.receipts: list[Deferred[bool]] = []
        self.waiters: list[Deferred[None]] = []


def _legacy_session(element: domish.Element) -> bool:
    """RFC 3921 §3 session establishment, which RFC 6121 makes a no-op."""
    for child in element.elements():
        return child.uri == ns.SESSION and child.name == "session"
    return False
