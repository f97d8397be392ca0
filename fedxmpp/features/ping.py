"""XEP-0199: XMPP Ping, answered by the server for its own domains."""

from __future__ import annotations

from fedxmpp.features.context import FeatureContext
from fedxmpp.hooks import Hooks
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml import ns


def register(hooks: Hooks, ctx: FeatureContext) -> None:
    ctx.disco.server_features.add(ns.PING)

    def pong(event: StanzaEvent) -> bool:
        event.reply()
        return True

    hooks.add(f"iq-get/host/{ns.PING}", pong)
