"""XEP-0199: XMPP Ping, answered by the server for its own domains."""

from __future__ import annotations

from fedxmpp.hooks import Hooks
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml import ns

FEATURES = (ns.PING,)


def register(hooks: Hooks) -> None:
    def pong(event: StanzaEvent) -> bool:
        event.reply()
        return True

    hooks.add(f"iq-get/host/{ns.PING}", pong)
