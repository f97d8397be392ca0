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

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.c2s.settlement import InOrder
from fedxmpp.router import Settled
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from fedxmpp.c2s.csi import HeldUpdates
    from fedxmpp.c2s.service import C2SContext
    from fedxmpp.c2s.sm import ManagedSession
    from fedxmpp.stream.xmlstream import ServerStream

log = Logger()

STANZAS = frozenset({"message", "presence", "iq"})
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
        self.ctx.sessions.unbind(self)
        self.ctx.hooks.fire("c2s/session-ended", self)
        if self.sm is not None:
            self.sm.finished()


def _legacy_session(element: domish.Element) -> bool:
    """RFC 3921 §3 session establishment, which RFC 6121 makes a no-op."""
    for child in element.elements():
        return child.uri == ns.SESSION and child.name == "session"
    return False
