"""XEP-0012: Last Activity.

* Asked of the server (``example.test``): seconds since the server started.
* Asked of a user's bare JID, answered on the user's behalf: ``seconds='0'`` while
  the user has an available resource; otherwise the seconds since their last
  session ended, with the status text of the unavailable presence they sent then.
  Only the user and contacts allowed to see the user's presence (subscription
  'from' or 'both') are told; others get ``<forbidden/>`` (XEP-0012 §3), an
  address without an account ``<service-unavailable/>`` (RFC 6121 §8.5.1), an
  account that never logged out ``<item-not-found/>``.

The logout time is stored (keyval store ``last``) when a user's last session
ends ("c2s/session-ended"), so it survives a restart.
"""

from __future__ import annotations

import json

from twisted.words.xish import domish

from fedxmpp.features._shared import background, child, in_background, may_see_presence, text_of
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.storage.errors import NoSuchAccount
from fedxmpp.xml.jid import JID

LAST = "jabber:iq:last"
STORE = "last"
# Longest status text kept from an unavailable presence.
MAX_STATUS = 1024


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(LAST)
    ctx.disco.account_features.add(LAST)
    started = ctx.clock.seconds()
    # Status text of the unavailable presence each session sent last (by full JID);
    # an entry lives as long as its session.
    statuses: dict[JID, str] = {}

    def uptime(event: StanzaEvent) -> bool:
        event.reply(_query(ctx.clock.seconds() - started))
        return True

    async def user_last(event: StanzaEvent) -> None:
        user = event.to
        storage = ctx.storage
        if storage is None or not await storage.accounts.exists(user.user, user.host):
            event.error("service-unavailable")
            return
        if not await may_see_presence(ctx, user, event.frm):
            event.error("forbidden")
            return
        if any(s.available for s in ctx.sessions.resources(user)):
            event.reply(_query(0))
            return
        raw = await storage.keyval.get(user.user, user.host, STORE)
        if raw is None:
            event.error("item-not-found")
            return
        record = json.loads(raw)
        event.reply(_query(ctx.clock.seconds() - float(record["time"]), record.get("status", "")))

    def own_presence(event: StanzaEvent) -> bool:
        # Only watches the presence a client broadcasts: the status of its last
        # unavailable presence, forgotten when it becomes available again.
        if event.stanza.getAttribute("to") is None and event.frm.resource is not None:
            if event.type == "unavailable":
                statuses[event.frm] = text_of(child(event.stanza, None, "status"))[:MAX_STATUS]
            elif event.type is None:
                statuses.pop(event.frm, None)
        return False

    def session_ended(session) -> None:
        status = statuses.pop(session.address, "")
        bare = session.bare
        if ctx.storage is None or ctx.sessions.resources(bare):
            return
        record = json.dumps({"time": ctx.clock.seconds(), "status": status}).encode()
        background(_store(ctx, bare, record), f"storing the last activity of {bare}")

    hooks.add(f"iq-get/host/{LAST}", uptime)
    hooks.add(f"iq-get/bare/{LAST}", in_background(user_last, "last activity"))
    hooks.add("pre-presence/bare", own_presence, step="last-activity")
    hooks.add("c2s/session-ended", session_ended)


async def _store(ctx: ServerContext, bare: JID, record: bytes) -> None:
    try:
        await ctx.storage.keyval.set(bare.user, bare.host, STORE, "", record)
    except NoSuchAccount:
        pass  # removed while logged in


def _query(seconds: float, status: str = "") -> domish.Element:
    query = domish.Element((LAST, "query"))
    query["seconds"] = str(max(0, int(seconds)))
    if status:
        query.addContent(status)
    return query
