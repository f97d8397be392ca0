"""The multi-user chat service: the route for its domain, its rooms, who may create
them, the service's own disco, and persistent rooms in storage.

Stanzas reach :meth:`MucService.route` from the router, whichever way they came
(a local client, or a remote server over s2s); everything a room sends goes back
through the router.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.config import MucConfig
from fedxmpp.features._shared import background
from fedxmpp.muc import stanzas as s
from fedxmpp.muc.archive import RoomArchive
from fedxmpp.muc.room import Room, Subject
from fedxmpp.muc.roomconfig import RoomConfig
from fedxmpp.router import Router, Settled
from fedxmpp.storage import MucStore, StoredRoom
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID

log = Logger()


class MucService:
    def __init__(self, config: MucConfig, hosted: frozenset[str] | tuple[str, ...], router: Router, clock: Any) -> None:
        self.config = config
        self.domain = config.domain
        self.hosted = frozenset(hosted)
        self.router = router
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.store: MucStore | None = None
        self.archive: RoomArchive | None = None
        router.add_route(self.domain, self.route)

    # -- lifecycle -----------------------------------------------------------------------

    async def load(self, store: MucStore | None) -> None:
        """Bring back the persistent rooms (before any listener opens)."""
        self.store = store
        if store is None:
            return
        if self.config.archive_length:
            self.archive = RoomArchive(store, self.domain, self.config.archive_length, self.config.archive_page,
                                       self.clock)
        for stored in await store.rooms(self.domain):
            state = json.loads(stored.state)
            room = self._new_room(stored.room, RoomConfig.from_json(stored.config, self.config),
                                  affiliations=json.loads(stored.affiliations),
                                  subject=Subject(state.get("subject", ""), state.get("by", "")),
                                  salt=state.get("salt"), nicks=state.get("nicks", {}),
                                  vcard=state.get("vcard"))
            self.rooms[stored.room] = room
        log.info("MUC {domain}: {count} persistent rooms loaded", domain=self.domain, count=len(self.rooms))

    def flushed(self) -> defer.Deferred[Any] | None:
        """Fires once the room archive's writes under way are done (``storage/flush``)."""
        return None if self.archive is None else self.archive.flushed()

    def shutdown(self) -> None:
        for room in list(self.rooms.values()):
            room.shutdown()

    def disco_items(self, *_query: Any) -> list[tuple[JID, str]]:
        """The server's disco#items entry for this service."""
        return [(JID(None, self.domain), "Chatrooms")]

    # -- routing -------------------------------------------------------------------------

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> Settled:
        """The route for the service's domain; a Deferred while what the stanza caused
        is not committed yet (a room's archive row)."""
        try:
            if to.user is None:
                self._service(stanza, frm, to)
                return None
            return self._room(stanza, frm, to)
        except StanzaError as e:
            self._bounce(stanza, frm, to, e)
            return None
        except Exception:
            # A bug must not take the router's caller down, nor leave the sender waiting.
            log.failure("MUC: {name} from {frm} to {to} failed", name=stanza.name, frm=frm.full(), to=to.full())
            self._bounce(stanza, frm, to, StanzaError("internal-server-error"))
            return None

    def _bounce(self, stanza: domish.Element, frm: JID, to: JID, error: StanzaError) -> None:
        if stanza.getAttribute("type") in ("error", "result"):
            return
        self.router.route(s.error_from(stanza, to, frm, error), to, frm)

    def _service(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        if stanza.name != "iq":
            if stanza.name == "message":
                raise StanzaError("service-unavailable", "The service itself takes no messages")
            return
        payload = next(iter(stanza.elements()), None)
        key = (stanza.getAttribute("type"), None if payload is None else payload.uri,
               None if payload is None else payload.name)
        if key == ("get", ns.DISCO_INFO, "query"):
            query = domish.Element((ns.DISCO_INFO, "query"))
            identity = query.addElement("identity")
            identity["category"] = "conference"
            identity["type"] = "text"
            identity["name"] = "Chatrooms"
            for feature in sorted((s.MUC, ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, s.OCCUPANT_ID)):
                query.addElement("feature")["var"] = feature
            self._result(stanza, frm, to, query)
        elif key == ("get", ns.DISCO_ITEMS, "query"):
            query = domish.Element((ns.DISCO_ITEMS, "query"))
            for name, room in sorted(self.rooms.items()):
                if room.config.public and not room.locked and not room.destroyed:
                    item = query.addElement("item")
                    item["jid"] = room.jid.full()
                    item["name"] = room.config.name or name
            self._result(stanza, frm, to, query)
        elif key == ("get", ns.PING, "ping"):
            self._result(stanza, frm, to, None)
        elif key[0] in ("get", "set"):
            raise StanzaError("service-unavailable", "The service does not answer that query")

    def _result(self, stanza: domish.Element, frm: JID, to: JID, payload: domish.Element | None) -> None:
        result = s.stanza("iq", to, frm, "result", stanza.getAttribute("id"))
        if payload is not None:
            result.addChild(payload)
        self.router.route(result, to, frm)

    def _room(self, stanza: domish.Element, frm: JID, to: JID) -> Settled:
        assert to.user is not None
        room = self.rooms.get(to.user)
        nick = to.resource
        if stanza.name == "presence":
            if nick is None:
                if stanza.getAttribute("type") is None:
                    raise StanzaError("jid-malformed", "Join a room as room@service/nickname")
                return None
            if room is None:
                if stanza.getAttribute("type") is not None:
                    return None
                room = self._create(to.user, frm)
                room.enter(stanza, frm, nick, created=True)
                return None
            room.presence(stanza, frm, nick)
            return None
        if room is None:
            raise StanzaError("item-not-found", "No such room")
        if stanza.name == "message":
            return room.message(stanza, frm, nick)
        elif stanza.name == "iq":
            if stanza.getAttribute("type") in ("result", "error"):
                if nick is not None:
                    room.iq_answer(stanza, frm, nick)
                return None
            if nick is not None:
                room.private_iq(stanza, frm, nick)
                return None
            payload = next(iter(stanza.elements()), None)
            if self.archive is not None and nick is None and payload is not None and payload.uri == s.MAM \
                    and room.archived:
                work = self.archive.query(room, stanza, frm, self.router.route)
            else:
                work = room.iq(stanza, frm, nick)
            d = defer.Deferred.fromCoroutine(work)
            d.addCallbacks(lambda payload: self._result(stanza, frm, to, payload),
                           lambda failure: self._iq_failed(failure, stanza, frm, to))
        return None

    def _iq_failed(self, failure: Any, stanza: domish.Element, frm: JID, to: JID) -> None:
        if failure.check(StanzaError):
            self._bounce(stanza, frm, to, failure.value)
            return
        log.failure("MUC iq to {to} failed", failure, to=to.full())
        self._bounce(stanza, frm, to, StanzaError("internal-server-error"))

    # -- rooms ---------------------------------------------------------------------------

    def _create(self, name: str, creator: JID) -> Room:
        bare = creator.bare.full()
        if self.config.create == "admins" and bare not in self.config.admins:
            raise StanzaError("not-allowed", "Only the service's admins may create rooms")
        if self.config.create == "local" and creator.host not in self.hosted:
            raise StanzaError("not-allowed", "Only users of this server may create rooms")
        owned = sum(1 for r in self.rooms.values() if r.affiliations.get(bare) == "owner")
        if owned >= self.config.rooms_per_user and bare not in self.config.admins:
            raise StanzaError("resource-constraint", f"You own {owned} rooms already, the most allowed")
        room = self._new_room(name, RoomConfig.defaults(self.config), affiliations={bare: "owner"}, locked=True)
        self.rooms[name] = room
        log.info("MUC room {room} created by {creator}", room=room.jid.full(), creator=bare)
        return room

    def _new_room(self, name: str, config: RoomConfig, **kw: Any) -> Room:
        room = Room(JID(name, self.domain), config, self.config, self.clock, self.router.route, self._save, **kw)
        room.on_empty = self._empty
        room.archive = self.archive
        return room

    def _empty(self, room: Room) -> None:
        if room.destroyed or not room.config.persistent:
            name = room.jid.user or ""
            if self.rooms.get(name) is room:
                del self.rooms[name]
            if self.store is not None and not room.destroyed:
                # A temporary room ends with its last occupant, and so does its archive: a new
                # room of the same name must not show it.
                background(self._forget(name), "MUC room end")

    async def _forget(self, name: str) -> None:
        if self.store is not None:
            await self.store.delete(self.domain, name, with_archive=True)

    async def _save(self, room: Room) -> None:
        if self.store is None:
            return
        name = room.jid.user or ""
        if room.destroyed or not room.config.persistent:
            await self.store.delete(self.domain, name, with_archive=room.destroyed)
            return
        await self.store.save(StoredRoom(
            self.domain, name, room.config.to_json(), json.dumps(room.affiliations, sort_keys=True),
            json.dumps({"subject": room.subject.text, "by": room.subject.by, "salt": room.salt,
                        "nicks": room.nicks, "vcard": room.vcard}, sort_keys=True)))
