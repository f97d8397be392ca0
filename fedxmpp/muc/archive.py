"""Room archives (XEP-0313 on the room JID, §6.1.2 of XEP-0313): every groupchat
message with a body is stored as reflected (so without real JIDs the room did not
show), with a XEP-0359 stanza id by the room, and queried with the same filters
and XEP-0059 paging as a user's archive, except 'with'.

Writes run in the background; a query first waits for the writes that were
under way, so that a client sees what it was just sent.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.features.mam import MAM, RSM, QueryError, parse_query, query_form, result_message
from fedxmpp.muc.affiliations import affiliation_rank
from fedxmpp.muc.room import Room
from fedxmpp.muc.stanzas import SID
from fedxmpp.storage import ArchivedMessage, MucStore, UnknownArchiveId, make_archive_id
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID
from fedxmpp.xml.serialize import serialize

log = Logger()

# Result messages may be somewhat larger than what clients may send.
MAX_RESULT_SIZE = 1 << 20
MAX_RESULT_DEPTH = 32


class RoomArchive:
    def __init__(self, store: MucStore, domain: str, keep: int, max_page: int, clock: Any) -> None:
        self.store = store
        self.domain = domain
        self.keep = keep
        self.max_page = max_page
        self.clock = clock
        self._writing: set[defer.Deferred[None]] = set()

    def stamp(self, room: Room, reflected: domish.Element) -> ArchivedMessage:
        """Give *reflected* its stanza id by the room; the entry to archive."""
        micros = int(self.clock.seconds() * 1_000_000)
        archive_id = make_archive_id(micros, os.urandom(6))
        sid = reflected.addElement((SID, "stanza-id"))
        sid["id"] = archive_id
        sid["by"] = room.jid.full()
        return ArchivedMessage(archive_id, micros, serialize(reflected, ns.CLIENT))

    def record(self, room: Room, entry: ArchivedMessage) -> defer.Deferred[None]:
        """Write *entry* in the background; the Deferred fires once it is committed (or failed, logged)."""
        d = defer.Deferred.fromCoroutine(self.store.archive(self.domain, room.jid.user or "", [entry], self.keep))
        self._writing.add(d)

        def failed(failure: Any) -> None:
            log.failure("Archiving a message of {room} failed", failure, room=room.jid.full())

        d.addErrback(failed)
        d.addBoth(lambda _: self._writing.discard(d))
        return d

    def flushed(self) -> defer.Deferred[Any]:
        """Fires once every write under way is done (before storage closes)."""
        return defer.DeferredList(list(self._writing))

    async def query(self, room: Room, stanza: domish.Element, frm: JID, send: Any) -> domish.Element | None:
        """Answer a MAM iq to *room*: the form (get), or results then ``<fin/>`` (set)."""
        payload = next(iter(stanza.elements()), None)
        assert payload is not None
        affiliation = room.affiliation(frm)
        if affiliation == "outcast" or (room.config.members_only and affiliation_rank(affiliation) < 2):
            raise StanzaError("forbidden", "Only members may read this room's archive")
        if room.config.password and room.occupant_of(frm) is None and affiliation != "owner":
            raise StanzaError("forbidden", "Only occupants may read this room's archive")
        if stanza.getAttribute("type") == "get":
            if payload.name == "query":
                return query_form()
            raise StanzaError("feature-not-implemented")
        if payload.name != "query":
            raise StanzaError("feature-not-implemented")
        try:
            q, flip = parse_query(payload, self.max_page)
        except QueryError as e:
            raise StanzaError(e.condition, e.text) from None
        if q.with_jid is not None:
            raise StanzaError("feature-not-implemented", "A room's archive has no 'with' filter")
        if self._writing:
            await self.flushed()
        try:
            page = await self.store.query(self.domain, room.jid.user or "", q)
        except UnknownArchiveId as e:
            raise StanzaError("item-not-found", f"No message {e.archive_id!r} in the archive") from None
        queryid = payload.getAttribute("queryid")
        for message in reversed(page.messages) if flip else page.messages:
            result = result_message(room.jid, frm, queryid, message, MAX_RESULT_SIZE, MAX_RESULT_DEPTH)
            if result is not None:
                send(result, room.jid, frm)
        fin = domish.Element((MAM, "fin"))
        if page.complete:
            fin["complete"] = "true"
        rsm = fin.addElement((RSM, "set"))
        if page.messages:
            first = rsm.addElement("first", content=page.messages[0].archive_id)
            first["index"] = str(page.first_index or 0)
            rsm.addElement("last", content=page.messages[-1].archive_id)
        rsm.addElement("count", content=str(page.count))
        return fin
