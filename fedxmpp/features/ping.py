"""XEP-0199: XMPP Ping, answered by the server for its own domains and, on the
account's behalf, for a user who pings their own bare JID.

A client's ping without 'to' is addressed to the user's bare JID (RFC 6120
§10.3.3: the server handles it on behalf of the account), so both the keepalive
of clients that leave 'to' out (libstrophe) and a ping to the own bare JID get a
result.  A ping to someone else's bare JID is not the server's to answer.
"""

from __future__ import annotations

from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml import ns


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(ns.PING)

    def pong(event: StanzaEvent) -> bool:
        event.reply()
        return True

    def pong_for_own_account(event: StanzaEvent) -> bool:
        if event.frm.bare != event.to.bare:
            return False
        event.reply()
        return True

    hooks.add(f"iq-get/host/{ns.PING}", pong)
    hooks.add(f"iq-get/bare/{ns.PING}", pong_for_own_account)
