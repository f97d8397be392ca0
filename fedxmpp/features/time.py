"""XEP-0202: Entity Time of the server, always given in UTC (tzo +00:00), so that
the answer says nothing about where the server stands."""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.words.xish import domish

from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent

TIME = "urn:xmpp:time"


def utc_stamp(seconds: float) -> str:
    """XEP-0082 DateTime in UTC, whole seconds, e.g. 2024-05-01T12:00:00Z.  (Fractions
    are allowed, but some clients' parsers, slixmpp's among them, reject them.)"""
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(TIME)

    def entity_time(event: StanzaEvent) -> bool:
        el = domish.Element((TIME, "time"))
        el.addElement("tzo", content="+00:00")
        el.addElement("utc", content=utc_stamp(ctx.clock.seconds()))
        event.reply(el)
        return True

    hooks.add(f"iq-get/host/{TIME}", entity_time)
