"""The user's own server's turn: what happens to a client's stanza before it is routed.

RFC 6121 gives the *sender's* server work to do whatever the destination: an
outbound subscription request changes the user's roster (§3.1.2), presence
without a 'to' is broadcast to the user's subscribers (§4.2.2), directed presence
is remembered (§4.6.2).  A client session therefore routes through
:class:`ClientOutbound` (it is the ``router`` of the C2S context), which fires a
``pre-`` event on the sender's side, named like the delivery events::

    pre-message/bare  pre-presence/full  pre-iq/host ...

A handler that returns True has taken the stanza over (and routes what it
decides to); otherwise the stanza goes to :meth:`Router.route` unchanged.  Still
one route per hop: the router is called once, by whoever ends up sending.

As on the delivery side (:mod:`fedxmpp.chains`), a handler may return an
awaitable (a blocklist to read): one sender's stanzas pass in the order they
were sent (:class:`~fedxmpp.im.serial.SerialJobs` per full JID), and a policy
that fails refuses the stanza with ``<internal-server-error/>``, answered to the
sender's session.  :meth:`ClientOutbound.route` returns when the stanza is
settled, as :meth:`Router.route` does, including the archive row of what the
user sent.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.hooks import Hooks, PolicyFailed
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.serial import SerialJobs
from fedxmpp.im.sessions import SessionManager
from fedxmpp.router import Router, Settled
from fedxmpp.xml.errors import StanzaError, error_reply
from fedxmpp.xml.jid import JID

log = Logger()


class ClientOutbound:
    """A :class:`Router` front for client sessions (only ``route`` is theirs to call)."""

    def __init__(self, hooks: Hooks, router: Router, sessions: SessionManager | None = None) -> None:
        self.hooks = hooks
        self.router = router
        self.sessions = sessions
        #: One chain at a time per sending resource.
        self.serial = SerialJobs()

    @property
    def hosted(self) -> frozenset[str]:
        return self.router.hosted

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> Settled:
        kind = "host" if to.user is None else ("bare" if to.resource is None else "full")
        event = StanzaEvent(stanza, frm, to, self.router)
        try:
            handled = self.serial.attempt(frm, self.hooks.run, f"pre-{stanza.name}/{kind}", event)
        except PolicyFailed:
            self._refuse(event)
            return None
        if handled is True or handled is False:
            return self._onward(handled, event)
        return handled.addCallbacks(self._onward, self._failed, callbackArgs=(event,), errbackArgs=(event,))

    def _onward(self, handled: bool, event: StanzaEvent) -> Settled:
        if handled:
            return event.settled()
        routed = self.router.route(event.stanza, event.frm, event.to)
        if event.pending is None:
            return routed
        if routed is not None:
            event.settles_when(routed)
        return event.settled()

    def _failed(self, failure: Failure, event: StanzaEvent) -> None:
        if not failure.check(PolicyFailed):
            log.failure("Sending a stanza from {frm} failed", failure, frm=event.frm.full())
        self._refuse(event)

    def _refuse(self, event: StanzaEvent) -> None:
        """Answer the sending session directly: routed, the error would pass the
        same policy that just failed."""
        stanza = event.stanza
        stype = stanza.getAttribute("type")
        session = self.sessions.get(event.frm) if self.sessions is not None else None
        if session is None or stype == "error" or (stanza.name == "iq" and stype == "result"):
            return
        reply = error_reply(stanza, StanzaError("internal-server-error",
                                                "The server could not apply its policy to this stanza"))
        reply["from"] = event.to.full()
        reply["to"] = event.frm.full()
        session.send(reply)

    def bounce(self, stanza: domish.Element, frm: JID, to: JID, error: StanzaError) -> None:
        self.router.bounce(stanza, frm, to, error)
