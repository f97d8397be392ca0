"""XEP-0049: Private XML Storage.

A user keeps XML elements on the server, one per (namespace, element name), and
reads them back; only their own (anything addressed to another user is
``<forbidden/>``).  Requests:

* set: ``<query xmlns='jabber:iq:private'>`` with one or more elements, each in a
  namespace of its own, stored (replacing what was there);
* get: the same with the (empty) elements wanted; each comes back as stored, or
  as sent when nothing is stored.

Refused with ``<not-acceptable/>``: a query without a child element (XEP-0049
§2.3), and elements in the reserved namespaces ``jabber:client``,
``jabber:server`` and ``jabber:iq:private``.  An element larger than ``[features]
private_max_size`` bytes, or one more than ``private_max_items`` elements, is
refused with ``<policy-violation/>``.  Stored in the keyval store ``private``,
keyed by ``{namespace}name``.
"""

from __future__ import annotations

from twisted.words.xish import domish

from fedxmpp.features._shared import element_from_bytes, element_to_bytes, in_background
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.storage.errors import NoSuchAccount
from fedxmpp.xml import ns

PRIVATE = "jabber:iq:private"
STORE = "private"
RESERVED = frozenset({ns.CLIENT, ns.SERVER, PRIVATE})


def key_of(element: domish.Element) -> str:
    return f"{{{element.uri}}}{element.name}"


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(PRIVATE)
    features = ctx.config.features

    def check(event: StanzaEvent) -> list[domish.Element] | None:
        """The query's elements if the request is acceptable; else answer it."""
        if event.frm.bare != event.to:
            event.error("forbidden", "Private XML belongs to its owner only")
            return None
        query = event.payload()
        assert query is not None
        wanted = list(query.elements())
        if not wanted:
            event.error("not-acceptable", "Name the element to store or retrieve")
            return None
        for el in wanted:
            if not el.uri or el.uri in RESERVED:
                event.error("not-acceptable", f"The namespace {el.uri!r} is reserved")
                return None
        return wanted

    async def get(event: StanzaEvent) -> None:
        wanted = check(event)
        if wanted is None:
            return
        user = event.to
        result = domish.Element((PRIVATE, "query"))
        for el in wanted:
            raw = await ctx.storage.keyval.get(user.user, user.host, STORE, key_of(el))
            result.addChild(element_from_bytes(raw) if raw is not None else el)
        event.reply(result)

    async def set_(event: StanzaEvent) -> None:
        wanted = check(event)
        if wanted is None:
            return
        user = event.to
        documents = {key_of(el): element_to_bytes(el) for el in wanted}
        for data in documents.values():
            if len(data) > features.private_max_size:
                event.error("policy-violation",
                            f"A private XML element may hold at most {features.private_max_size} bytes")
                return
        keyval = ctx.storage.keyval
        existing = set(await keyval.list_keys(user.user, user.host, STORE))
        if len(existing | documents.keys()) > features.private_max_items:
            event.error("policy-violation", f"At most {features.private_max_items} private XML elements")
            return
        try:
            for key, data in documents.items():
                await keyval.set(user.user, user.host, STORE, key, data)
        except NoSuchAccount:
            event.error("item-not-found")
            return
        event.reply()

    hooks.add(f"iq-get/bare/{PRIVATE}", in_background(get, "private XML get"))
    hooks.add(f"iq-set/bare/{PRIVATE}", in_background(set_, "private XML set"))
