"""XEP-0030: Service Discovery, answered by the server for its domains and for its
users' bare JIDs.

What is listed comes only from the facts other features declare in
``ctx.disco`` when they register, so the lists say exactly what this server does.

* The server (``example.test``): identity server/im, ``server_features``, and as
  items whatever the ``item_providers`` return (components...).
* An account (``alice@example.test``), answered on the user's behalf under the
  rules of XEP-0030 §8: identity account/registered and ``account_features`` for
  the user themself and for contacts allowed to see the user's presence
  (subscription 'from' or 'both'); anyone else, and any address without an
  account, gets ``<service-unavailable/>``.  disco#items lists the user's
  available resources to the same people, and is empty for everyone else.
"""

from __future__ import annotations

from twisted.words.xish import domish

from fedxmpp.features._shared import in_background, may_see_presence
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import Identity, ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml import ns

SERVER_IDENTITY = Identity("server", "im", "fedxmpp")
ACCOUNT_IDENTITY = Identity("account", "registered")


def register(hooks: Hooks, ctx: ServerContext) -> None:
    disco = ctx.disco
    disco.server_identities.add(SERVER_IDENTITY)
    disco.server_features.update((ns.DISCO_INFO, ns.DISCO_ITEMS))
    disco.account_identities.add(ACCOUNT_IDENTITY)
    disco.account_features.update((ns.DISCO_INFO, ns.DISCO_ITEMS))

    def server_info(event: StanzaEvent) -> bool:
        node = _node(event)
        if node is not None and not any(known(node) for known in disco.server_info_nodes):
            event.error("item-not-found")
            return True
        event.reply(info_element(disco.server_identities, disco.server_features, node))
        return True

    def server_items(event: StanzaEvent) -> bool:
        node = _node(event)
        if node is not None:
            event.error("item-not-found")
            return True
        query = domish.Element((ns.DISCO_ITEMS, "query"))
        seen: set[str] = set()
        for provider in list(disco.item_providers):
            for jid, name in provider():
                jid = str(jid)
                if jid in seen:
                    continue
                seen.add(jid)
                item = query.addElement("item")
                item["jid"] = jid
                if name:
                    item["name"] = name
        event.reply(query)
        return True

    async def account_info(event: StanzaEvent) -> None:
        node = _node(event)
        if not await may_see_presence(ctx, event.to, event.frm):
            event.error("service-unavailable")
        elif node is not None:
            event.error("item-not-found")
        else:
            event.reply(info_element(disco.account_identities, disco.account_features, None))

    async def account_items(event: StanzaEvent) -> None:
        node = _node(event)
        query = domish.Element((ns.DISCO_ITEMS, "query"))
        if node is not None:
            query["node"] = node
        elif await may_see_presence(ctx, event.to, event.frm):
            for session in sorted(ctx.sessions.resources(event.to), key=lambda s: s.address.full()):
                if session.available:
                    query.addElement("item")["jid"] = session.address.full()
        event.reply(query)

    hooks.add(f"iq-get/host/{ns.DISCO_INFO}", server_info)
    hooks.add(f"iq-get/host/{ns.DISCO_ITEMS}", server_items)
    hooks.add(f"iq-get/bare/{ns.DISCO_INFO}", in_background(account_info, "disco#info"))
    hooks.add(f"iq-get/bare/{ns.DISCO_ITEMS}", in_background(account_items, "disco#items"))


def info_element(identities: set[Identity], features: set[str], node: str | None) -> domish.Element:
    """A disco#info ``<query/>``, identities and features in a stable order."""
    query = domish.Element((ns.DISCO_INFO, "query"))
    if node is not None:
        query["node"] = node
    for identity in sorted(identities, key=lambda i: (i.category, i.type, i.name)):
        el = query.addElement("identity")
        el["category"] = identity.category
        el["type"] = identity.type
        if identity.name:
            el["name"] = identity.name
    for feature in sorted(features):
        query.addElement("feature")["var"] = feature
    return query


def _node(event: StanzaEvent) -> str | None:
    query = event.payload()
    if query is None or query.name != "query":
        return None
    node = query.getAttribute("node")
    return node or None

