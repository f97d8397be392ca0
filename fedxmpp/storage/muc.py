"""Persistent multi-user chat rooms kept in SQL: the :class:`~fedxmpp.storage.MucStore`
implementation."""

from __future__ import annotations

from dataclasses import dataclass

from fedxmpp.storage.database import Database, Transaction


@dataclass(frozen=True)
class StoredRoom:
    """A persistent room as stored: *config*, *affiliations* and *subject* are JSON text."""

    domain: str
    room: str
    config: str
    affiliations: str
    subject: str


class SqlMucStore:
    """Rooms in the ``muc_rooms`` table, keyed by (domain, room)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def rooms(self, domain: str) -> list[StoredRoom]:
        return await self._db.run_interaction("muc rooms", _rooms_txn, domain)

    async def save(self, room: StoredRoom) -> None:
        await self._db.run_interaction("muc save", _save_txn, room)

    async def delete(self, domain: str, room: str) -> bool:
        return await self._db.run_interaction("muc delete", _delete_txn, domain, room)


def _rooms_txn(txn: Transaction, domain: str) -> list[StoredRoom]:
    txn.execute("SELECT room, config, affiliations, subject FROM muc_rooms WHERE domain = ? ORDER BY room",
                (domain,))
    return [StoredRoom(domain, str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in txn.fetchall()]


def _save_txn(txn: Transaction, room: StoredRoom) -> None:
    txn.execute(
        "INSERT INTO muc_rooms (domain, room, config, affiliations, subject) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (domain, room) DO UPDATE SET config = excluded.config,"
        " affiliations = excluded.affiliations, subject = excluded.subject",
        (room.domain, room.room, room.config, room.affiliations, room.subject))


def _delete_txn(txn: Transaction, domain: str, room: str) -> bool:
    txn.execute("SELECT 1 FROM muc_rooms WHERE domain = ? AND room = ?", (domain, room))
    found = txn.fetchone() is not None
    txn.execute("DELETE FROM muc_rooms WHERE domain = ? AND room = ?", (domain, room))
    return found
