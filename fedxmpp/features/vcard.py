"""XEP-0054: vcard-temp, kept by the server for its users.

* A user stores their vCard with an iq set to their own bare JID (or with no
  'to'); one larger than ``[features] vcard_max_size`` bytes is refused with
  ``<policy-violation/>``, a set for someone else with ``<forbidden/>``.  An empty
  ``<vCard/>`` deletes it.
* Anyone may read a user's vCard with an iq get to the user's bare JID.  A user
  reading their own gets an empty ``<vCard/>`` when none is stored; anyone else
  gets ``<item-not-found/>``, the same whether the account exists or not.

Stored in the keyval store ``vcard``, so it survives a restart.
"""

from __future__ import annotations

from twisted.words.xish import domish

from fedxmpp.features._shared import element_from_bytes, element_to_bytes, in_background
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.storage.errors import NoSuchAccount

VCARD = "vcard-temp"
STORE = "vcard"


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(VCARD)
    ctx.disco.account_features.add(VCARD)
    max_size = ctx.config.features.vcard_max_size

    async def get(event: StanzaEvent) -> None:
        user = event.to
        raw = None
        if ctx.storage is not None:
            raw = await ctx.storage.keyval.get(user.user, user.host, STORE)
        if raw is not None:
            event.reply(element_from_bytes(raw))
        elif event.frm.bare == user:
            event.reply(domish.Element((VCARD, "vCard")))
        else:
            event.error("item-not-found")

    async def set_(event: StanzaEvent) -> None:
        user = event.to
        if event.frm.bare != user:
            event.error("forbidden", "You may only change your own vCard")
            return
        vcard = event.payload()
        assert vcard is not None
        data = element_to_bytes(vcard)
        if len(data) > max_size:
            event.error("policy-violation", f"A vCard may hold at most {max_size} bytes")
            return
        empty = not any(True for _ in vcard.elements())
        try:
            await ctx.storage.keyval.set(user.user, user.host, STORE, "", None if empty else data)
        except NoSuchAccount:
            event.error("item-not-found")
            return
        event.reply()

    hooks.add(f"iq-get/bare/{VCARD}", in_background(get, "vCard get"))
    hooks.add(f"iq-set/bare/{VCARD}", in_background(set_, "vCard set"))
