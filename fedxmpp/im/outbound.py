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
"""

from __future__ import annotations

from twisted.words.xish import domish

from fedxmpp.hooks import Hooks
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.router import Router
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID


class ClientOutbound:
    """A :class:`Router` front for client sessions (only ``route`` is theirs to call)."""

    def __init__(self, hooks: Hooks, router: Router) -> None:
        self.hooks = hooks
        self.router = router

    @property
    def hosted(self) -> frozenset[str]:
        return self.router.hosted

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        kind = "host" if to.user is None else ("bare" if to.resource is None else "full")
        event = StanzaEvent(stanza, frm, to, self.router)
        if self.hooks.fire(f"pre-{stanza.name}/{kind}", event):
            return
        self.router.route(stanza, frm, to)

    def bounce(self, stanza: domish.Element, frm: JID, to: JID, error: StanzaError) -> None:
        self.router.bounce(stanza, frm, to, error)
