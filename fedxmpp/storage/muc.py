"""Persistent multi-user chat rooms kept in SQL: the :class:`~fedxmpp.storage.MucStore`
implementation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fedxmpp.storage.archive import ArchivedMessage, ArchivePage, ArchiveQuery, UnknownArchiveId, archive_id_timestamp
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


def _position_txn(txn: Transaction, domain: str, room: str, archive_id: str) -> tuple[int, int]:
    ts = archive_id_timestamp(archive_id)
    if ts is None:
        raise UnknownArchiveId(archive_id)
    txn.execute("SELECT ts, id FROM muc_archive WHERE domain = ? AND room = ? AND ts = ? AND archive_id = ?",
                (domain, room, ts, archive_id))
    row = txn.fetchone()
    if row is None:
        raise UnknownArchiveId(archive_id)
    return int(row[0]), int(row[1])


def _query_txn(txn: Transaction, domain: str, room: str, q: ArchiveQuery) -> ArchivePage:
    """One page of a room's archive: the same filters and paging as a user's archive
    (:class:`ArchiveQuery`), but 'with' (a room's archive is by nobody in particular)."""
    where = ["domain = ?", "room = ?"]
    args: list[Any] = [domain, room]
    if q.start is not None:
        where.append("ts >= ?")
        args.append(q.start)
    if q.end is not None:
        where.append("ts <= ?")
        args.append(q.end)
    if q.ids is not None:
        rows = [_position_txn(txn, domain, room, archive_id)[1] for archive_id in sorted(set(q.ids))]
        where.append(f"id IN ({', '.join('?' * len(rows))})" if rows else "0 = 1")
        args.extend(rows)
    for archive_id, op in ((q.after_id, ">"), (q.before_id, "<")):
        if archive_id is not None:
            where.append(f"(ts, id) {op} (?, ?)")
            args.extend(_position_txn(txn, domain, room, archive_id))
    result_set = " AND ".join(where)
    txn.execute(f"SELECT COUNT(*) FROM muc_archive WHERE {result_set}", args)
    row = txn.fetchone()
    count = int(row[0]) if row else 0
    page_where, page_args = list(where), list(args)
    backward = q.before is not None
    if q.after is not None:
        page_where.append("(ts, id) > (?, ?)")
        page_args.extend(_position_txn(txn, domain, room, q.after))
    if q.before:
        page_where.append("(ts, id) < (?, ?)")
        page_args.extend(_position_txn(txn, domain, room, q.before))
    if q.max <= 0:
        return ArchivePage([], count, None, count == 0)
    order = "DESC" if backward else "ASC"
    sql = (f"SELECT archive_id, ts, id, stanza FROM muc_archive WHERE {' AND '.join(page_where)}"
           f" ORDER BY ts {order}, id {order} LIMIT ?")
    page_args.append(q.max + 1)
    if q.index is not None and not backward and q.after is None:
        sql += " OFFSET ?"
        page_args.append(q.index)
    txn.execute(sql, page_args)
    found = txn.fetchall()
    complete = len(found) <= q.max
    found = found[:q.max]
    if backward:
        found.reverse()
    if not found:
        return ArchivePage([], count, None, complete)
    txn.execute(f"SELECT COUNT(*) FROM muc_archive WHERE {result_set} AND (ts, id) < (?, ?)",
                (*args, found[0][1], found[0][2]))
    row = txn.fetchone()
    first_index = int(row[0]) if row else 0
    return ArchivePage([ArchivedMessage(str(r[0]), int(r[1]), str(r[3])) for r in found], count, first_index,
                       complete)
