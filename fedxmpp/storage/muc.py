"""Persistent multi-user chat rooms kept in SQL: the :class:`~fedxmpp.storage.MucStore`
implementation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fedxmpp.storage.archive import ArchivedMessage, ArchivePage, ArchiveQuery, page_txn
from fedxmpp.storage.database import Database, Transaction


@dataclass(frozen=True)
class StoredRoom:
    """A persistent room as stored: *config*, *affiliations* and *state* (subject, occupant-id salt) are JSON text."""

    domain: str
    room: str
    config: str
    affiliations: str
    state: str


class SqlMucStore:
    """Rooms in the ``muc_rooms`` table, keyed by (domain, room)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def rooms(self, domain: str) -> list[StoredRoom]:
        return await self._db.run_interaction("muc rooms", _rooms_txn, domain)

    async def save(self, room: StoredRoom) -> None:
        await self._db.run_interaction("muc save", _save_txn, room)

    async def delete(self, domain: str, room: str, *, with_archive: bool = True) -> bool:
        return await self._db.run_interaction("muc delete", _delete_txn, domain, room, with_archive)

    async def archive(self, domain: str, room: str, entries: Sequence[ArchivedMessage], keep: int) -> None:
        await self._db.run_interaction("muc archive", _archive_txn, domain, room, entries, keep)

    async def query(self, domain: str, room: str, query: ArchiveQuery) -> ArchivePage:
        return await self._db.run_interaction("muc archive query", _query_txn, domain, room, query)


def _rooms_txn(txn: Transaction, domain: str) -> list[StoredRoom]:
    txn.execute("SELECT room, config, affiliations, state FROM muc_rooms WHERE domain = ? ORDER BY room",
                (domain,))
    return [StoredRoom(domain, str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in txn.fetchall()]


def _save_txn(txn: Transaction, room: StoredRoom) -> None:
    txn.execute(
        "INSERT INTO muc_rooms (domain, room, config, affiliations, state) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (domain, room) DO UPDATE SET config = excluded.config,"
        " affiliations = excluded.affiliations, state = excluded.state",
        (room.domain, room.room, room.config, room.affiliations, room.state))


def _delete_txn(txn: Transaction, domain: str, room: str, with_archive: bool) -> bool:
    txn.execute("SELECT 1 FROM muc_rooms WHERE domain = ? AND room = ?", (domain, room))
    found = txn.fetchone() is not None
    txn.execute("DELETE FROM muc_rooms WHERE domain = ? AND room = ?", (domain, room))
    if with_archive:
        txn.execute("DELETE FROM muc_archive WHERE domain = ? AND room = ?", (domain, room))
    return found


def _archive_txn(txn: Transaction, domain: str, room: str, entries: Sequence[ArchivedMessage], keep: int) -> None:
    txn.executemany("INSERT INTO muc_archive (domain, room, archive_id, ts, stanza) VALUES (?, ?, ?, ?, ?)",
                    [(domain, room, e.archive_id, e.timestamp, e.stanza) for e in entries])
    # Only the newest *keep* messages of the room stay.
    txn.execute("SELECT ts, id FROM muc_archive WHERE domain = ? AND room = ? ORDER BY ts DESC, id DESC"
                " LIMIT 1 OFFSET ?", (domain, room, keep))
    row = txn.fetchone()
    if row is not None:
        txn.execute("DELETE FROM muc_archive WHERE domain = ? AND room = ? AND (ts, id) <= (?, ?)",
                    (domain, room, row[0], row[1]))


def _query_txn(txn: Transaction, domain: str, room: str, q: ArchiveQuery) -> ArchivePage:
    """One page of a room's archive: the same filters and paging as a user's archive
    (:class:`ArchiveQuery`), but 'with' (a room's archive is by nobody in particular)."""
    return page_txn(txn, "muc_archive", {"domain": domain, "room": room}, q)
