"""Rosters (RFC 6121 §2): roster get/set/remove, pushes, versioning, and the public API.

:class:`Roster` owns every change to a roster.  It answers ``jabber:iq:roster``
requests from a user's own resources, pushes each change to the user's
*interested* resources (those that asked for the roster, §2.2), and offers an
async API to the rest of the server (the presence module; XEP-0356 privileged
components): :meth:`Roster.get`, :meth:`Roster.set_item`, :meth:`Roster.remove`.

All work on one user's roster runs in that user's queue of
:class:`~fedxmpp.im.serial.SerialJobs`, so read-modify-write cycles never
interleave.  The rosters of users with a bound session are cached in memory
(loaded at first use, dropped when the last session ends); every write goes to
the database first and to the cache after it succeeded.

Versions (§2.6) are the store's per-user counter, written as decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.serial import SerialJobs
from fedxmpp.im.sessions import BoundSession
from fedxmpp.im.subscription import new_item, visible
from fedxmpp.storage import NoSuchAccount, RosterItem, StorageError
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from fedxmpp.im.context import ServerContext

log = Logger()

ROSTER = "jabber:iq:roster"
ROSTERVER = "urn:xmpp:features:rosterver"

#: Longest item name and group name, in characters (RFC 6121 §2.3.3 lets the server choose).
MAX_NAME = 1024
MAX_GROUP = 1024
#: Most groups one item may be in.
MAX_GROUPS = 64


class RosterError(Exception):
    """A roster request that cannot be honoured: *condition* is the stanza error."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text


@dataclass
class Cached:
    """A user's whole roster in memory: every row (hidden ones included) by contact."""

    version: int
    items: dict[str, RosterItem] = field(default_factory=dict)

    def visible(self) -> list[RosterItem]:
        return [i for _, i in sorted(self.items.items()) if not i.hidden]


class Roster:
    def __init__(self, ctx: ServerContext, serial: SerialJobs, *, max_items: int) -> None:
        self.ctx = ctx
        self.serial = serial
        self.max_items = max_items
        self._cache: dict[JID, Cached] = {}
        self._interested: set[BoundSession] = set()
        hooks = ctx.hooks
        hooks.add(f"iq-get/bare/{ROSTER}", self._iq_get)
        hooks.add(f"iq-set/bare/{ROSTER}", self._iq_set)
        hooks.add("c2s/features", self._stream_features)
        hooks.add("c2s/session-ended", self._session_ended)

    # -- the public API: each call runs in the owner's queue ------------------------------

    async def get(self, owner: JID) -> tuple[int, list[RosterItem]]:
        """The version and the items of *owner*'s roster, as the user sees it (rows that
        only hold an unanswered subscription request are left out)."""
        return await self.serial.call(owner.bare, self._get, owner.bare)

    async def set_item(self, owner: JID, contact: JID, name: str | None, groups: Sequence[str]) -> None:
        """Add or update *contact* in *owner*'s roster (RFC 6121 §2.3), pushing the change.

        The subscription state is kept.  :class:`RosterError` for a bad request,
        :class:`~fedxmpp.storage.NoSuchAccount` if *owner* has no account.
        """
        await self.serial.call(owner.bare, self._set_item, owner.bare, contact, name, tuple(groups))

    async def remove(self, owner: JID, contact: JID) -> None:
        """Remove *contact* from *owner*'s roster (RFC 6121 §2.5): cancels the
        subscriptions both ways (unsubscribe and unsubscribed to the contact), then
        pushes the removal.  :class:`RosterError` ``item-not-found`` if absent."""
        await self.serial.call(owner.bare, self._remove, owner.bare, contact.bare)

    # -- for code already running in the owner's queue ---------------------------------------

    async def load(self, owner: JID) -> Cached:
        """*owner*'s rows, from the cache or the store (cached while the user has a session)."""
        cached = self._cache.get(owner)
        if cached is not None:
            return cached
        version, items = await self.ctx.storage.roster.get_roster(owner.user, owner.host)
        cached = Cached(version, {i.jid: i for i in items})
        if self.ctx.sessions.resources(owner):
            self._cache[owner] = cached
        return cached

    async def item(self, owner: JID, contact: JID) -> RosterItem | None:
        cached = self._cache.get(owner)
        if cached is not None:
            return cached.items.get(contact.full())
        return await self.ctx.storage.roster.get_item(owner.user, owner.host, contact.full())

    def cached(self, owner: JID) -> Cached | None:
        return self._cache.get(owner)

    async def write(self, owner: JID, jid: str, before: RosterItem | None, after: RosterItem | None) -> int:
        """Store *after* as *owner*'s row for contact *jid* (None: delete the row),
        update the cache, push what the user sees change; the new version."""
        store = self.ctx.storage.roster
        if after is None:
            version = await store.remove_item(owner.user, owner.host, jid)
        else:
            version = await store.set_item(owner.user, owner.host, after)
        cached = self._cache.get(owner)
        if cached is not None:
            cached.version = version
            if after is None:
                cached.items.pop(jid, None)
            else:
                cached.items[jid] = after
        if visible(after):
            self.push(owner, after, version)
        elif visible(before):
            self.push(owner, replace(before, subscription="remove"), version)  # type: ignore[arg-type]
        return version

    def has_room(self, rows: int) -> bool:
        return rows < self.max_items

    def forget(self, owner: JID) -> None:
        """Drop the cached roster of a user who has no session left."""
        if not self.ctx.sessions.resources(owner):
            self._cache.pop(owner, None)

    def push(self, owner: JID, item: RosterItem, version: int) -> None:
        """A roster push (§2.1.6) of *item* to every interested resource of *owner*."""
        for session in self.ctx.sessions.resources(owner):
            if session not in self._interested:
                continue
            iq = domish.Element((ns.CLIENT, "iq"))
            iq["type"] = "set"
            iq["id"] = f"push-{version}"
            iq["to"] = session.address.full()
            query = iq.addElement((ROSTER, "query"))
            query["ver"] = str(version)
            query.addChild(item_element(item))
            session.send(iq)

    # -- internals, in the owner's queue -------------------------------------------------------

    async def _get(self, owner: JID) -> tuple[int, list[RosterItem]]:
        cached = await self.load(owner)
        return cached.version, cached.visible()

    async def _set_item(self, owner: JID, contact: JID, name: str | None, groups: tuple[str, ...]) -> None:
        contact_s = _check_contact(owner, contact)
        name, groups = _check_details(name, groups)
        cached = await self.load(owner)
        before = cached.items.get(contact_s)
        if before is None and not self.has_room(len(cached.items)):
            raise RosterError("not-allowed", f"A roster holds at most {self.max_items} items")
        after = replace(before or new_item(contact_s), name=name, groups=groups, hidden=False)
        await self.write(owner, contact_s, before, after)

    async def _remove(self, owner: JID, contact: JID) -> None:
        contact_s = _check_contact(owner, contact)
        cached = await self.load(owner)
        before = cached.items.get(contact_s)
        if before is None:
            raise RosterError("item-not-found", "No such contact in the roster")
        await self.write(owner, contact_s, before, None)
        self._cancel(owner, contact, before)

    def _cancel(self, owner: JID, contact: JID, before: RosterItem) -> None:
        """§2.5.2: cancel the subscriptions both ways, and the pending requests."""
        if before.subscription in ("to", "both") or before.ask:
            self._send_presence(owner, contact, "unsubscribe")
        if before.subscription in ("from", "both") or before.pending_in:
            self._send_presence(owner, contact, "unsubscribed")
        if before.subscription in ("from", "both"):
            for session in self.ctx.sessions.resources(owner):
                if session.available:
                    self._send_presence(session.address, contact, "unavailable")

    def _send_presence(self, frm: JID, to: JID, ptype: str) -> None:
        p = domish.Element((ns.CLIENT, "presence"))
        p["type"] = ptype
        p["from"] = frm.full()
        p["to"] = to.full()
        self.ctx.router.route(p, frm, to)

    # -- jabber:iq:roster from the user's own resources ---------------------------------------

    def _own(self, event: StanzaEvent) -> bool:
        if event.frm.bare == event.to and event.frm.resource is not None:
            return True
        # Only the account's own resources may read or change its roster (§2.3.3);
        # privileged components use the Python API.
        event.error("forbidden", "Only the account's own resources may use its roster")
        return False

    def _iq_get(self, event: StanzaEvent) -> bool:
        if self._own(event):
            self.serial.run(event.to, self._answer_get, event)
        return True

    async def _answer_get(self, event: StanzaEvent) -> None:
        session = self.ctx.sessions.get(event.frm)
        if session is not None:
            self._interested.add(session)
        try:
            cached = await self.load(event.to)
        except StorageError:
            event.error("internal-server-error", "The roster could not be read")
            return
        query = event.payload()
        asked = query.getAttribute("ver") if query is not None else None
        if asked is not None and asked == str(cached.version):
            event.reply()  # §2.6.3: the client's copy is current; no pushes are owed
            return
        result = domish.Element((ROSTER, "query"))
        result["ver"] = str(cached.version)
        for item in cached.visible():
            result.addChild(item_element(item))
        event.reply(result)

    def _iq_set(self, event: StanzaEvent) -> bool:
        if self._own(event):
            self.serial.run(event.to, self._answer_set, event)
        return True

    async def _answer_set(self, event: StanzaEvent) -> None:
        owner = event.to
        try:
            contact, remove, name, groups = _parse_set(event.payload())
            if remove:
                await self._remove(owner, contact)
            else:
                await self._set_item(owner, contact, name, groups)
        except RosterError as e:
            event.error(e.condition, e.text)
            return
        except (StorageError, NoSuchAccount) as e:
            log.error("Roster set for {owner} failed: {error}", owner=owner.full(), error=str(e))
            event.error("internal-server-error", "The roster could not be changed")
            return
        event.reply()

    # -- hooks ------------------------------------------------------------------------------------

    def _stream_features(self, features: domish.Element) -> None:
        features.addElement((ROSTERVER, "ver"))

    def _session_ended(self, session: BoundSession) -> None:
        self._interested.discard(session)

    async def remove_account(self, owner: JID, delete: Callable[[], Awaitable[None]]) -> None:
        """Run *delete* (which removes the account and, with it, its roster rows) in
        *owner*'s queue, then tell each contact, as a removal of its item would
        (§2.5.2).  The roster is read before the rows go, from the cache or the store."""
        await self.serial.call(owner, self._remove_account, owner, delete)

    async def _remove_account(self, owner: JID, delete: Callable[[], Awaitable[None]]) -> None:
        cached = await self.load(owner)
        await delete()
        self._cache.pop(owner, None)
        for item in cached.items.values():
            try:
                contact = JID.parse(item.jid)
            except InvalidJID:
                continue
            self._cancel(owner, contact, item)


def item_element(item: RosterItem) -> domish.Element:
    """``<item/>`` as in a roster result or push; *item.subscription* may be 'remove'."""
    el = domish.Element((ROSTER, "item"))
    el["jid"] = item.jid
    if item.name:
        el["name"] = item.name
    el["subscription"] = item.subscription
    if item.subscription != "remove":
        if item.ask:
            el["ask"] = "subscribe"
        if item.approved:
            el["approved"] = "true"
        for group in item.groups:
            el.addElement("group", content=group)
    return el


def _check_contact(owner: JID, contact: JID) -> str:
    if contact.resource is not None:
        raise RosterError("bad-request", "A roster item's 'jid' is a bare JID")
    if contact == owner:
        raise RosterError("not-allowed", "You cannot add yourself to your roster")
    return contact.full()


def _check_details(name: str | None, groups: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    if name == "":
        name = None
    if name is not None and len(name) > MAX_NAME:
        raise RosterError("not-acceptable", f"The name is longer than {MAX_NAME} characters")
    if len(groups) > MAX_GROUPS:
        raise RosterError("not-acceptable", f"An item may be in at most {MAX_GROUPS} groups")
    for group in groups:
        if not group:
            raise RosterError("not-acceptable", "A group name cannot be empty")
        if len(group) > MAX_GROUP:
            raise RosterError("not-acceptable", f"A group name is longer than {MAX_GROUP} characters")
    if len(set(groups)) != len(groups):
        raise RosterError("bad-request", "The same group is named twice")
    return name, tuple(groups)


def _parse_set(query: domish.Element | None) -> tuple[JID, bool, str | None, tuple[str, ...]]:
    """The contact, whether it is a removal, the name and the groups of a roster set."""
    items = [c for c in query.elements()] if query is not None else []
    if len(items) != 1 or items[0].name != "item" or items[0].uri != ROSTER:
        raise RosterError("bad-request", "A roster set carries exactly one <item/>")
    item = items[0]
    jid_attr = item.getAttribute("jid")
    if not jid_attr:
        raise RosterError("bad-request", "The <item/> has no 'jid'")
    try:
        contact = JID.parse(jid_attr)
    except InvalidJID:
        raise RosterError("jid-malformed", "The item's 'jid' is not a valid JID") from None
    # Any other 'subscription' value, and 'ask'/'approved', are the server's to set: ignored.
    remove = item.getAttribute("subscription") == "remove"
    groups = tuple(str(g) for g in item.elements() if g.name == "group" and g.uri == ROSTER)
    return contact, remove, item.getAttribute("name"), groups

