"""The PEP service of every account: XEP-0060 requests to a user's bare JID,
notifications, and the last published items sent on presence.

Everything that reads or changes one user's nodes runs in that user's queue
(:class:`~fedxmpp.im.serial.SerialJobs`), so a publish and the notifications
it causes keep their order.  Users' nodes (configuration, affiliations and the
last item) are cached in a bounded LRU; every write goes to the store first.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.features import forms
from fedxmpp.features._shared import element_from_bytes, element_to_bytes
from fedxmpp.features.pep.interest import CapsCache, Features, Listeners, parse_caps, priority_of
from fedxmpp.features.pep.nodeconfig import NODE_CONFIG, PUBLISH_OPTIONS, PUBSUB, ConfigValueError, NodeConfig
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import Identity, ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.serial import SerialJobs
from fedxmpp.storage import NoSuchAccount, PubsubItem, PubsubNode
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID

log = Logger()

OWNER = f"{PUBSUB}#owner"
EVENT = f"{PUBSUB}#event"
ERRORS = f"{PUBSUB}#errors"
DELAY = "urn:xmpp:delay"
IDENTITY = Identity("pubsub", "pep")
FEATURES = frozenset([PUBSUB] + [f"{PUBSUB}#{f}" for f in (
    "access-open", "access-presence", "access-whitelist", "auto-create", "auto-subscribe", "config-node",
    "config-node-max", "create-and-configure", "create-nodes", "delete-items", "delete-nodes",
    "filtered-notifications", "item-ids", "last-published", "modify-affiliations", "multi-items",
    "persistent-items", "presence-notifications", "publish", "publish-options", "purge-nodes", "retract-items",
    "retrieve-affiliations", "retrieve-default", "retrieve-items")])

NODES_CACHE = 10_000
MAX_NODE_NAME = 1024


class PubsubError(Exception):
    """A request refused with *condition* and, where XEP-0060 has one, a
    ``pubsub#errors`` condition *app* (with *feature* for ``<unsupported/>``)."""

    def __init__(self, condition: str, app: str | None = None, text: str | None = None,
                 feature: str | None = None) -> None:
        super().__init__(text or app or condition)
        self.condition = condition
        self.app = app
        self.text = text
        self.feature = feature


@dataclass
class NodeState:
    name: str
    config: NodeConfig
    affiliations: dict[str, str] = field(default_factory=dict)
    last: PubsubItem | None = None

    def record(self) -> PubsubNode:
        return PubsubNode(self.name, self.config.values(), dict(self.affiliations))


def stamp(micros: int) -> str:
    seconds, us = divmod(micros, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{us:06d}Z" if us else f"{text}Z"


class Pep:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        cfg = ctx.config.pep
        self.max_nodes = cfg.max_nodes
        self.max_items = cfg.max_items
        self.max_item_size = cfg.max_item_size
        self.serial = SerialJobs()
        self.caps = CapsCache(ctx)
        self.listeners = Listeners()
        self._nodes: OrderedDict[JID, dict[str, NodeState]] = OrderedDict()

    def register(self, hooks: Hooks) -> None:
        disco = self.ctx.disco
        disco.account_identities.add(IDENTITY)
        disco.account_features.update(FEATURES)
        for kind in ("get", "set"):
            hooks.add(f"iq-{kind}/bare/{PUBSUB}", self._request)
            hooks.add(f"iq-{kind}/bare/{OWNER}", self._request)
        hooks.add("presence/bare", self._contact_presence, step="pep")
        hooks.add("pre-presence/bare", self._own_presence, step="pep")
        hooks.add("c2s/session-ended", self._session_ended)
        hooks.add("iq-result/bare", self.caps.result, step="pep")
        hooks.add("iq-error/bare", self.caps.result, step="pep")
        hooks.add("account/removed", self._account_removed)

    # -- presence: who listens -------------------------------------------------------------

    def _contact_presence(self, event: StanzaEvent) -> bool:
        owner, frm = event.to.bare, event.frm
        if frm.resource is not None and frm.bare != owner:
            self._presence(owner, frm, event.stanza)
        return False

    def _own_presence(self, event: StanzaEvent) -> bool:
        if event.stanza.getAttribute("to") is None and event.frm.resource is not None:
            self._presence(event.frm.bare, event.frm, event.stanza)
        return False

    def _session_ended(self, session: Any) -> None:
        self.listeners.remove(session.bare, session.address)

    def _account_removed(self, owner: JID) -> None:
        self._nodes.pop(owner, None)
        self.listeners.forget(owner)

    def _presence(self, owner: JID, full: JID, stanza: domish.Element) -> None:
        ptype = stanza.getAttribute("type")
        if ptype == "unavailable":
            self.listeners.remove(owner, full)
            return
        if ptype is not None:
            return
        caps, priority = parse_caps(stanza), priority_of(stanza)
        if caps is None or priority < 0:
            self.listeners.remove(owner, full)
            return
        caps = self.caps.intern(caps)
        listener = self.listeners.update(owner, full, caps, priority)
        if listener is not None:
            self.caps.learn(owner, full, caps, lambda features: self._learnt(owner, full, caps, features))

    def _learnt(self, owner: JID, full: JID, caps: Any, features: Features) -> None:
        listener = self.listeners.get(owner, full)
        if listener is None or listener.caps != caps:
            return  # gone, or other caps since
        before = listener.features or frozenset()
        listener.features = features
        wanted = {f[:-len("+notify")] for f in features - before if f.endswith("+notify")}
        if wanted and self.ctx.storage is not None:
            self.serial.run(owner, self._send_last_items, owner, full, wanted)

    async def _send_last_items(self, owner: JID, full: JID, wanted: set[str]) -> None:
        """XEP-0163 §4.3.4: the last item of each node *full* is interested in and may
        see, to a newly available resource."""
        state = await self._state(owner)
        for name in sorted(wanted):
            node = state.get(name)
            if (node is None or node.last is None or not node.config.deliver_notifications
                    or node.config.send_last_published_item != "on_sub_and_presence"):
                continue
            if await self._refusal(owner, node, full) is not None:
                continue
            message = self._items_event(owner, full, node, [node.last])
            message.addElement((DELAY, "delay"))["stamp"] = stamp(node.last.published)
            self._send(owner, full, message)

    # -- nodes in memory -------------------------------------------------------------------------

    async def _state(self, owner: JID) -> dict[str, NodeState]:
        """*owner*'s nodes, from the cache or the store; only in the owner's queue."""
        state = self._nodes.get(owner)
        if state is not None:
            self._nodes.move_to_end(owner)
            return state
        store = self.ctx.storage.pubsub
        nodes = await store.nodes(owner.user, owner.host)
        lasts = await store.last_items(owner.user, owner.host) if nodes else {}
        state = {n.node: NodeState(n.node, NodeConfig.from_values(n.config), dict(n.affiliations), lasts.get(n.node))
                 for n in nodes}
        self._nodes[owner] = state
        while len(self._nodes) > NODES_CACHE:
            self._nodes.popitem(last=False)
        return state

    # -- access --------------------------------------------------------------------------------

    async def _refusal(self, owner: JID, node: NodeState, who: JID) -> PubsubError | None:
        """Why *who* may not see *node*'s items, or None (XEP-0060 §6.5.9, §12.1)."""
        if who.bare == owner:
            return None
        affiliation = node.affiliations.get(who.bare.full())
        if affiliation == "outcast":
            return PubsubError("forbidden")
        model = node.config.access_model
        if model == "open":
            return None
        if model == "whitelist":
            if affiliation in ("member", "publisher"):
                return None
            return PubsubError("not-allowed", "closed-node")
        if await self._subscription(owner, who.bare) in ("from", "both"):
            return None
        return PubsubError("not-authorized", "presence-subscription-required")

    async def _subscription(self, owner: JID, contact: JID) -> str:
        roster = self.ctx.roster
        cached = roster.cached(owner)
        item = cached.items.get(contact.full()) if cached is not None else await roster.item(owner, contact)
        return item.subscription if item is not None else "none"

    # -- requests --------------------------------------------------------------------------------

    def _request(self, event: StanzaEvent) -> bool:
        self.serial.run(event.to.bare, self._answer, event)
        return True

    async def _answer(self, event: StanzaEvent) -> None:
        try:
            await self._dispatch(event)
        except PubsubError as e:
            self._error(event, e)
        except Exception:
            log.failure("PEP request from {frm} to {to} failed", frm=event.frm.full(), to=event.to.full())
            event.error("internal-server-error")

    def _error(self, event: StanzaEvent, e: PubsubError) -> None:
        reply = error_reply(event.stanza, StanzaError(e.condition, e.text))
        if e.app is not None:
            for el in reply.elements():
                if el.name == "error":
                    app = el.addElement((ERRORS, e.app))
                    if e.feature is not None:
                        app["feature"] = e.feature
        reply["from"] = event.to.full()
        reply["to"] = event.frm.full()
        self.ctx.router.route(reply, event.to, event.frm)

    async def _dispatch(self, event: StanzaEvent) -> None:
        if self.ctx.storage is None:
            raise PubsubError("service-unavailable")
        pubsub = event.payload()
        assert pubsub is not None
        children = [c for c in pubsub.elements() if c.uri == pubsub.uri]
        if not children:
            raise PubsubError("bad-request", text="An empty pubsub request")
        verb, setting = children[0], event.type == "set"
        name = verb.name
        if pubsub.uri == OWNER:
            if event.frm.bare != event.to:
                raise PubsubError("forbidden", text="Only the owner manages the nodes")
            handler = {(True, "configure"): self._configure_set, (False, "configure"): self._configure_get,
                       (True, "delete"): self._delete, (True, "purge"): self._purge,
                       (True, "affiliations"): self._affiliations_set, (False, "affiliations"): self._affiliations_get,
                       (False, "default"): self._default, (False, "subscriptions"): self._no_subscriptions,
                       }.get((setting, name))
        else:
            handler = {(True, "publish"): self._publish, (True, "retract"): self._retract,
                       (True, "create"): self._create, (False, "items"): self._items,
                       (False, "affiliations"): self._own_affiliations,
                       (False, "subscriptions"): self._no_subscriptions}.get((setting, name))
            if name in ("subscribe", "unsubscribe", "options"):
                raise PubsubError("feature-not-implemented", "unsupported", feature="subscribe",
                                  text="Subscribe to a user's events through presence and +notify")
        if handler is None:
            raise PubsubError("feature-not-implemented", text=f"<{name}/> is not supported here")
        await handler(event, verb, children)

    def _node_name(self, verb: domish.Element) -> str:
        name = verb.getAttribute("node")
        if not name:
            raise PubsubError("bad-request", "nodeid-required")
        if len(name) > MAX_NODE_NAME:
            raise PubsubError("not-acceptable", text="The node name is too long")
        return name

    async def _node(self, owner: JID, verb: domish.Element) -> NodeState:
        node = (await self._state(owner)).get(self._node_name(verb))
        if node is None:
            raise PubsubError("item-not-found", text="No such node")
        return node

    def _owner_only(self, event: StanzaEvent) -> None:
        if event.frm.bare != event.to:
            raise PubsubError("forbidden", text="Only the owner publishes to a personal node")

    @staticmethod
    def _options(children: list[domish.Element], wrapper: str, form_type: str) -> dict[str, list[str]] | None:
        el = next((c for c in children if c.name == wrapper), None)
        x = forms.find(el) if el is not None else None
        if x is None:
            return None
        try:
            form = forms.parse(x)
        except forms.FormError as e:
            raise PubsubError("bad-request", text=str(e)) from None
        if form.type == "cancel":
            return None
        if form.form_type not in (None, form_type):
            raise PubsubError("bad-request", text=f"Expected a {form_type} form")
        return form.submitted()

    async def _new_node(self, owner: JID, state: dict[str, NodeState], name: str, config: NodeConfig) -> NodeState:
        if len(state) >= self.max_nodes:
            raise PubsubError("policy-violation", text=f"An account has at most {self.max_nodes} nodes")
        node = NodeState(name, config)
        try:
            created = await self.ctx.storage.pubsub.create_node(owner.user, owner.host, node.record(), self._now())
        except NoSuchAccount:
            raise PubsubError("item-not-found", text="No such account") from None
        if not created:
            raise PubsubError("conflict", text="The node exists")
        state[name] = node
        return node

    def _now(self) -> int:
        return int(self.ctx.clock.seconds() * 1_000_000)

    # -- publish, retract, create --------------------------------------------------------------------

    async def _publish(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        self._owner_only(event)
        owner = event.to
        name = self._node_name(verb)
        items = [c for c in verb.elements() if c.name == "item"]
        if not items:
            raise PubsubError("bad-request", "item-required")
        if len(items) > 1:
            raise PubsubError("bad-request", "invalid-payload", "Publish one item at a time")
        payloads = list(items[0].elements())
        if len(payloads) != 1:
            raise PubsubError("bad-request", "invalid-payload" if payloads else "payload-required")
        data = element_to_bytes(payloads[0])
        if len(data) > self.max_item_size:
            raise PubsubError("not-acceptable", "payload-too-big",
                              f"An item holds at most {self.max_item_size} bytes")
        options = self._options(children, "publish-options", PUBLISH_OPTIONS) or {}
        state = await self._state(owner)
        node = state.get(name)
        if node is None:
            try:
                config = NodeConfig().apply(options, self.max_items)
            except ConfigValueError as e:
                raise PubsubError("conflict", "precondition-not-met", str(e)) from None
            node = await self._new_node(owner, state, name, config)
        else:
            differs = node.config.mismatch(options, self.max_items)
            if differs is not None:
                raise PubsubError("conflict", "precondition-not-met", f"The node's {differs} differs")
        item = PubsubItem(items[0].getAttribute("id") or secrets.token_hex(8), event.frm.full(),
                          data.decode("utf-8"), self._now())
        await self.ctx.storage.pubsub.publish(owner.user, owner.host, name, item,
                                              node.config.effective_max(self.max_items))
        node.last = item
        result = domish.Element((PUBSUB, "pubsub"))
        result_publish = result.addElement("publish")
        result_publish["node"] = name
        result_publish.addElement("item")["id"] = item.item_id
        event.reply(result)
        if node.config.deliver_notifications:
            for to in await self._recipients(owner, node):
                self._send(owner, to, self._items_event(owner, to, node, [item]))

    async def _retract(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        self._owner_only(event)
        owner = event.to
        node = await self._node(owner, verb)
        ids = [c.getAttribute("id") for c in verb.elements() if c.name == "item"]
        if len(ids) != 1 or not ids[0]:
            raise PubsubError("bad-request", "item-required")
        item_id = ids[0]
        store = self.ctx.storage.pubsub
        if not await store.retract(owner.user, owner.host, node.name, item_id):
            raise PubsubError("item-not-found", text="No such item")
        if node.last is not None and node.last.item_id == item_id:
            newest = await store.items(owner.user, owner.host, node.name, last=1)
            node.last = newest[0] if newest else None
        event.reply()
        if verb.getAttribute("notify") in ("1", "true") or node.config.notify_retract:
            for to in await self._recipients(owner, node):
                message = self._event(owner, to)
                items = message.firstChildElement().addElement("items")
                items["node"] = node.name
                items.addElement("retract")["id"] = item_id
                self._send(owner, to, message)

    async def _create(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        self._owner_only(event)
        name = verb.getAttribute("node")
        if not name:
            raise PubsubError("not-acceptable", "nodeid-required", "A personal node needs a name")
        name = self._node_name(verb)
        try:
            config = NodeConfig().apply(self._options(children, "configure", NODE_CONFIG) or {}, self.max_items)
        except ConfigValueError as e:
            raise PubsubError("not-acceptable", text=str(e)) from None
        owner = event.to
        state = await self._state(owner)
        if name in state:
            raise PubsubError("conflict", text="The node exists")
        await self._new_node(owner, state, name, config)
        event.reply()

    # -- reading -------------------------------------------------------------------------------

    async def _items(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        owner = event.to
        node = await self._node(owner, verb)
        refusal = await self._refusal(owner, node, event.frm)
        if refusal is not None:
            raise refusal
        ids = [c.getAttribute("id") for c in verb.elements() if c.name == "item" and c.getAttribute("id")]
        last = None
        max_text = verb.getAttribute("max_items")
        if max_text is not None:
            if not max_text.isdigit() or int(max_text) < 1:
                raise PubsubError("bad-request", text="max_items is a positive number")
            last = int(max_text)
        stored = await self.ctx.storage.pubsub.items(owner.user, owner.host, node.name,
                                                      item_ids=ids or None, last=last)
        result = domish.Element((PUBSUB, "pubsub"))
        items = result.addElement("items")
        items["node"] = node.name
        for item in stored:
            items.addChild(self._item_element(item))
        event.reply(result)

    async def _own_affiliations(self, event: StanzaEvent, verb: domish.Element,
                                children: list[domish.Element]) -> None:
        owner = event.to
        state = await self._state(owner)
        result = domish.Element((PUBSUB, "pubsub"))
        affiliations = result.addElement("affiliations")
        me = event.frm.bare.full()
        for name, node in sorted(state.items()):
            affiliation = "owner" if event.frm.bare == owner else node.affiliations.get(me)
            if affiliation is not None:
                el = affiliations.addElement("affiliation")
                el["node"] = name
                el["affiliation"] = affiliation
        event.reply(result)

    async def _no_subscriptions(self, event: StanzaEvent, verb: domish.Element,
                                children: list[domish.Element]) -> None:
        result = domish.Element((verb.uri, "pubsub"))
        subscriptions = result.addElement("subscriptions")
        if verb.getAttribute("node"):
            subscriptions["node"] = verb["node"]
        event.reply(result)

    # -- the owner's management ----------------------------------------------------------------------

    async def _configure_get(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        node = await self._node(event.to, verb)
        result = domish.Element((OWNER, "pubsub"))
        configure = result.addElement("configure")
        configure["node"] = node.name
        configure.addChild(node.config.form(self.max_items))
        event.reply(result)

    async def _configure_set(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        owner = event.to
        node = await self._node(owner, verb)
        x = forms.find(verb)
        if x is None:
            raise PubsubError("bad-request", text="Expected a configuration form")
        submitted = self._options([verb], "configure", NODE_CONFIG)
        if submitted is not None:
            try:
                config = node.config.apply(submitted, self.max_items)
            except ConfigValueError as e:
                raise PubsubError("not-acceptable", text=str(e)) from None
            if config != node.config:
                changed = NodeState(node.name, config, node.affiliations, node.last)
                await self.ctx.storage.pubsub.update_node(owner.user, owner.host, changed.record())
                node.config = config
        event.reply()

    async def _default(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        result = domish.Element((OWNER, "pubsub"))
        result.addElement("default").addChild(NodeConfig().form(self.max_items))
        event.reply(result)

    async def _delete(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        owner = event.to
        node = await self._node(owner, verb)
        recipients = await self._recipients(owner, node) if node.config.notify_delete else []
        await self.ctx.storage.pubsub.delete_node(owner.user, owner.host, node.name)
        (await self._state(owner)).pop(node.name, None)
        event.reply()
        for to in recipients:
            message = self._event(owner, to)
            message.firstChildElement().addElement("delete")["node"] = node.name
            self._send(owner, to, message)

    async def _purge(self, event: StanzaEvent, verb: domish.Element, children: list[domish.Element]) -> None:
        owner = event.to
        node = await self._node(owner, verb)
        await self.ctx.storage.pubsub.purge(owner.user, owner.host, node.name)
        node.last = None
        event.reply()
        if node.config.notify_retract:
            for to in await self._recipients(owner, node):
                message = self._event(owner, to)
                message.firstChildElement().addElement("purge")["node"] = node.name
                self._send(owner, to, message)

    async def _affiliations_get(self, event: StanzaEvent, verb: domish.Element,
                                children: list[domish.Element]) -> None:
        owner = event.to
        node = await self._node(owner, verb)
        result = domish.Element((OWNER, "pubsub"))
        affiliations = result.addElement("affiliations")
        affiliations["node"] = node.name
        for jid, affiliation in [(owner.full(), "owner"), *sorted(node.affiliations.items())]:
            el = affiliations.addElement("affiliation")
            el["jid"] = jid
            el["affiliation"] = affiliation
        event.reply(result)

    async def _affiliations_set(self, event: StanzaEvent, verb: domish.Element,
                                children: list[domish.Element]) -> None:
        owner = event.to
        node = await self._node(owner, verb)
        changed = dict(node.affiliations)
        for el in verb.elements():
            if el.name != "affiliation":
                continue
            affiliation = el.getAttribute("affiliation")
            try:
                jid = JID.parse(el.getAttribute("jid") or "").bare
            except InvalidJID:
                raise PubsubError("jid-malformed") from None
            if jid == owner or affiliation not in ("member", "outcast", "none"):
                raise PubsubError("not-acceptable", text="Affiliations here are member, outcast or none, "
                                                         "and the owner's stays")
            if affiliation == "none":
                changed.pop(jid.full(), None)
            else:
                changed[jid.full()] = affiliation
        if changed != node.affiliations:
            record = PubsubNode(node.name, node.config.values(), changed)
            await self.ctx.storage.pubsub.update_node(owner.user, owner.host, record)
            node.affiliations = changed
        event.reply()

    # -- notifications ---------------------------------------------------------------------------------

    async def _recipients(self, owner: JID, node: NodeState) -> list[JID]:
        """The available resources to notify of a change to *node*: those that asked
        for '<node>+notify' in their caps and may see the node (XEP-0163 §4.3)."""
        wanted = f"{node.name}+notify"
        out = []
        for full, listener in self.listeners.of(owner):
            if listener.features is None or wanted not in listener.features:
                continue
            if await self._refusal(owner, node, full) is None:
                out.append(full)
        return out

    def _event(self, owner: JID, to: JID) -> domish.Element:
        message = domish.Element((ns.CLIENT, "message"))
        message["from"] = owner.full()
        message["to"] = to.full()
        message["type"] = "headline"
        message["id"] = secrets.token_hex(8)
        message.addElement((EVENT, "event"))
        return message

    def _items_event(self, owner: JID, to: JID, node: NodeState, items: list[PubsubItem]) -> domish.Element:
        message = self._event(owner, to)
        el = message.firstChildElement().addElement("items")
        el["node"] = node.name
        for item in items:
            if node.config.deliver_payloads:
                el.addChild(self._item_element(item))
            else:
                el.addElement("item")["id"] = item.item_id
        return message

    @staticmethod
    def _item_element(item: PubsubItem) -> domish.Element:
        el = domish.Element((None, "item"))
        el["id"] = item.item_id
        el.addChild(element_from_bytes(item.payload.encode("utf-8")))
        return el

    def _send(self, owner: JID, to: JID, message: domish.Element) -> None:
        """Send a notification as the owner's own outgoing messages go: through the
        sender-side events first, so that the owner's blocklist applies (XEP-0163
        §4.3.3: never to a blocked entity)."""
        self.ctx.outbound.route(message, owner, to)
