"""XEP-0356 privileged entity (``urn:xmpp:privilege:2``, the version slixmpp/slidge speak).

Granted per component in configuration (``[components.component.privileges]``):

* ``message = "outgoing"``: the component may send a message on behalf of a user
  of a hosted domain by wrapping it, ``<message to='DOMAIN'><privilege><forwarded>
  <message from='user@DOMAIN' to='...'/></forwarded></privilege></message>``; the
  inner message is routed as if the user had sent it.  Its 'from' must be a bare
  JID at the domain the wrapper was sent to (or that domain itself).
* ``roster = "get" | "set" | "both"``: the component may read or change a user's
  roster with ``jabber:iq:roster`` iqs addressed to the user's bare JID.

Both arrive through the router like any stanza for a hosted domain; the handlers
here hook the delivery events (``message/host``, ``iq-get/bare/jabber:iq:roster``...)
ahead of the features, and leave alone what does not come from a connected
component.  After its handshake a component with any privilege is told which, by
one advertisement message from each hosted domain.

Not granted (not configurable): the "presence" and "iq" permissions, and roster
pushes to the component (XEP-0356 §4.4 of version 0.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.config import ComponentConfig, PrivilegesConfig
from fedxmpp.hooks import Hooks
from fedxmpp.storage import NoSuchAccount
from fedxmpp.xml import ns
from fedxmpp.xml.errors import STANZA_ERROR_TYPES
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from fedxmpp.component.session import ComponentSession
    from fedxmpp.router import Route

log = Logger()

PRIVILEGE = "urn:xmpp:privilege:2"
FORWARD = "urn:xmpp:forward:0"
ROSTER = "jabber:iq:roster"

# Ahead of the features (0) and the default delivery rules (-1000).
PRIORITY = 100
# Items accepted in one privileged roster set (slixmpp sends several at once).
MAX_ROSTER_ITEMS = 1000


class DeliveryEvent(Protocol):
    """What this module uses of the IM layer's StanzaEvent (transports do not import im)."""

    stanza: domish.Element
    frm: JID
    to: JID

    def reply(self, payload: domish.Element | None = None) -> None: ...

    def error(self, condition: str, text: str | None = None) -> None: ...


def advertisement(config: ComponentConfig, hosted: tuple[str, ...]) -> Iterator[domish.Element]:
    """The messages telling a component its privileges: one from each hosted domain,
    since slixmpp records privileges per server domain.  None without privileges."""
    perms = [(access, kind) for access, kind in (("roster", config.privileges.roster),
                                                   ("message", config.privileges.message)) if kind != "none"]
    if not perms:
        return
    for domain in hosted:
        message = domish.Element((ns.COMPONENT, "message"))
        message["from"] = domain
        message["to"] = config.domain
        message["id"] = f"privileges-{domain}"
        privilege = message.addElement((PRIVILEGE, "privilege"))
        for access, kind in perms:
            perm = privilege.addElement("perm")
            perm["access"] = access
            perm["type"] = kind
        yield message


class Privileges:
    """The server side of XEP-0356 for the connected components."""

    def __init__(self, sessions: Mapping[str, ComponentSession], user_route: Route,
                 roster: Callable[[], Any]) -> None:
        # The connected components by domain (the registry's own table, kept current).
        self.sessions = sessions
        # How a stanza sent on a user's behalf travels (that user's outbound path).
        self.user_route = user_route
        # The roster service (fedxmpp.im.roster) when there is one, looked up per use.
        self.roster = roster

    def register(self, hooks: Hooks) -> None:
        hooks.add("message/host", self.message, step="privilege")
        hooks.add(f"iq-get/bare/{ROSTER}", self.roster_get, PRIORITY)
        hooks.add(f"iq-set/bare/{ROSTER}", self.roster_set, PRIORITY)

    def granted(self, frm: JID) -> PrivilegesConfig | None:
        """The privileges of *frm* if it is a connected component's own address, else None."""
        if frm.user is not None or frm.resource is not None:
            return None
        session = self.sessions.get(frm.host)
        return session.config.privileges if session is not None else None

    # -- message permission -----------------------------------------------------------------

    def message(self, event: DeliveryEvent) -> bool:
        wrapper = _child(event.stanza, PRIVILEGE, "privilege")
        if wrapper is None:
            return False
        if event.stanza.getAttribute("type") == "error":
            return True
        granted = self.granted(event.frm)
        if granted is None or granted.message != "outgoing":
            log.info("Refused a privileged message from {frm}: no message privilege", frm=event.frm.full())
            event.error("forbidden", "No XEP-0356 message privilege for this entity")
            return True
        forwarded = _child(wrapper, FORWARD, "forwarded")
        inner = None
        if forwarded is not None:
            inner = next((c for c in forwarded.elements() if c.name == "message" and c.uri in ns.STANZA_NAMESPACES),
                         None)
        if inner is None:
            event.error("bad-request", "Expected <privilege><forwarded><message/></forwarded></privilege>")
            return True
        try:
            sender = JID.parse(inner.getAttribute("from") or "")
        except InvalidJID:
            sender = None
        if sender is None or sender.resource is not None or sender.host != event.to.host:
            event.error("forbidden", f"The forwarded message must come from a bare JID at {event.to.host}")
            return True
        try:
            to = JID.parse(inner.getAttribute("to") or "")
        except InvalidJID:
            event.error("jid-malformed", "The forwarded message has no valid 'to'")
            return True
        inner.parent = None
        inner["from"] = sender.full()
        log.debug("Component {component} sends a message as {sender} to {to}", component=event.frm.full(),
                  sender=sender.full(), to=to.full())
        self.user_route(inner, sender, to)
        return True

    # -- roster permission ---------------------------------------------------------------------

    def roster_get(self, event: DeliveryEvent) -> bool:
        return self._roster(event, ("get", "both"), self._get)

    def roster_set(self, event: DeliveryEvent) -> bool:
        return self._roster(event, ("set", "both"), self._set)

    def _roster(self, event: DeliveryEvent, allowed: tuple[str, ...], action: Callable[..., Any]) -> bool:
        granted = self.granted(event.frm)
        if granted is None:
            return False  # a user's own roster request, or someone else's: not ours to answer
        if granted.roster not in allowed:
            log.info("Refused a roster request from {frm} for {owner}: roster privilege is {roster!r}",
                     frm=event.frm.full(), owner=event.to.full(), roster=granted.roster)
            event.error("forbidden", "No XEP-0356 roster privilege for this operation")
            return True
        roster = self.roster()
        if roster is None:
            event.error("service-unavailable", "This server has no roster service")
            return True
        d = defer.Deferred.fromCoroutine(action(roster, event))
        d.addErrback(self._failed, event)
        return True

    async def _get(self, roster: Any, event: DeliveryEvent) -> None:
        version, items = await roster.get(event.to.bare)
        query = domish.Element((ROSTER, "query"))
        if version is not None:
            query["ver"] = str(version)
        for item in items:
            if not getattr(item, "hidden", False):
                query.addChild(roster_item_element(item))
        event.reply(query)

    async def _set(self, roster: Any, event: DeliveryEvent) -> None:
        query = _child(event.stanza, ROSTER, "query")
        items = [c for c in query.elements() if c.name == "item" and c.uri == ROSTER] if query is not None else []
        if not items or len(items) > MAX_ROSTER_ITEMS:
            event.error("bad-request", f"A roster set carries 1 to {MAX_ROSTER_ITEMS} items")
            return
        changes = []
        for item in items:
            try:
                contact = JID.parse(item.getAttribute("jid") or "")
            except InvalidJID:
                event.error("jid-malformed", "A roster item has no valid 'jid'")
                return
            groups = [str(g).strip() for g in item.elements() if g.name == "group" and g.uri == ROSTER]
            # 'subscription' other than "remove" is ignored, as for clients (RFC 6121
            # §2.1.2.5): subscription states change only through presence.
            changes.append((contact, item.getAttribute("subscription") == "remove",
                            item.getAttribute("name") or None, groups))
        owner = event.to.bare
        # In order; the roster service checks each item, and its first refusal is the answer.
        for contact, remove, name, groups in changes:
            if remove:
                await roster.remove(owner, contact)
            else:
                await roster.set_item(owner, contact, name, groups)
        log.info("Component {component} changed {n} roster item(s) of {owner}", component=event.frm.full(),
                 n=len(changes), owner=owner.full())
        event.reply()

    def _failed(self, failure: Failure, event: DeliveryEvent) -> None:
        error = failure.value
        condition = getattr(error, "condition", None)
        if condition in STANZA_ERROR_TYPES:  # the roster service's RosterError: a bad request
            event.error(condition, getattr(error, "text", None))
        elif failure.check(NoSuchAccount):
            event.error("service-unavailable", "No such account")  # RFC 6121 §8.5.1
        else:
            log.failure("Privileged roster request from {frm} failed", failure, frm=event.frm.full())
            event.error("internal-server-error")


def roster_item_element(item: Any) -> domish.Element:
    """``<item/>`` for a roster item of the roster service (jid, name, subscription, ask, groups)."""
    el = domish.Element((ROSTER, "item"))
    jid = getattr(item, "jid", None) or getattr(item, "contact")
    el["jid"] = jid.full() if isinstance(jid, JID) else str(jid)
    name = getattr(item, "name", None)
    if name:
        el["name"] = name
    el["subscription"] = getattr(item, "subscription", None) or "none"
    if getattr(item, "ask", None):
        el["ask"] = "subscribe"
    for group in getattr(item, "groups", ()) or ():
        el.addElement("group", content=group)
    return el


def _child(element: domish.Element, uri: str, name: str) -> domish.Element | None:
    for child in element.elements():
        if child.name == name and child.uri == uri:
            return child
    return None
