"""Message archives kept in SQL: the :class:`~fedxmpp.storage.ArchiveStore` implementation.

An archive is read in its order, (``ts``, ``id``): the time a message was
archived, then the order of arrival for messages of the same microsecond.  Every
query is one transaction, so a page, its count and its index agree.

Archive ids (:func:`make_archive_id`) carry the message's timestamp and six
random bytes, so that an id is found through the (user, time) index: no index of
its own to update for every message archived, and still unpredictable.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Sequence

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, NoSuchAccount


def make_archive_id(timestamp: int, nonce: bytes) -> str:
    """The archive id of a message archived at *timestamp* (microseconds), with
    *nonce* (6 random bytes) for unpredictability: 19 URL-safe characters."""
    return base64.urlsafe_b64encode(timestamp.to_bytes(8, "big") + nonce).rstrip(b"=").decode("ascii")


def archive_id_timestamp(archive_id: str) -> int | None:
    """The timestamp an archive id carries; None if it is not an archive id."""
    if len(archive_id) != 19:
        return None
    try:
        raw = base64.urlsafe_b64decode(archive_id + "=")
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw[:8], "big") if len(raw) == 14 else None


class UnknownArchiveId(LookupError):
    """An archive id named by a query (RSM after/before, after-id, before-id,
    ids) is not in the user's archive (XEP-0313: ``<item-not-found/>``)."""

    def __init__(self, archive_id: str) -> None:
        super().__init__(f"no archived message {archive_id!r}")
        self.archive_id = archive_id


@dataclass(frozen=True)
class ArchiveEntry:
    """One message to archive in *user*'s archive."""

    user: str
    domain: str
    #: The unpredictable id clients see (XEP-0359 stanza-id, RSM): from
    #: :func:`make_archive_id` with *timestamp*.
    archive_id: str
    #: Microseconds since the epoch.
    timestamp: int
    #: The other party's bare JID, and its resource ('' when none).
    with_jid: str
    with_resource: str
    outgoing: bool
    #: The message as serialised XML (jabber:client).
    stanza: str


@dataclass(frozen=True)
class ArchivePrefs:
    """A user's archiving preferences (XEP-0441): *default* is 'always', 'never'
    or 'roster'; *always* and *never* list JIDs (bare or full) as strings."""

    default: str
    always: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ArchivedMessage:
    archive_id: str
    timestamp: int
    stanza: str


@dataclass(frozen=True)
class ArchiveQuery:
    """What to read from an archive: a result set (the filters) and a page of it.

    The filters (XEP-0313 §4.1): *with_jid* (a bare JID; with *with_resource*,
    that full JID only), *start*/*end* (microseconds, inclusive), *after_id* and
    *before_id* (exclusive bounds), *ids* (only those messages).  The page
    (XEP-0059): at most *max* messages after *after*, or before *before* ('' for
    the last page), or from position *index*; the first page otherwise.
    """

    with_jid: str | None = None
    with_resource: str | None = None
    start: int | None = None
    end: int | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] | None = None
    after: str | None = None
    before: str | None = None
    index: int | None = None
    max: int = 50


@dataclass(frozen=True)
class ArchivePage:
    #: The page, oldest first.
    messages: list[ArchivedMessage]
    #: Messages in the whole result set.
    count: int
    #: Position of the first message of the page in the result set (None for an empty page).
    first_index: int | None
    #: Whether nothing more lies beyond the page in the direction of paging
    #: (later messages going forward, earlier ones going backward).
    complete: bool


class SqlArchiveStore:
    """Messages in the ``archive`` table."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, entries: Sequence[ArchiveEntry]) -> int:
        if not entries:
            return 0
        return await self._db.run_interaction("archive messages", _add_txn, entries)

    async def query(self, user: str, domain: str, query: ArchiveQuery) -> ArchivePage:
        return await self._db.run_interaction("query archive", _query_txn, user, domain, query)

    async def bounds(self, user: str, domain: str) -> tuple[ArchivedMessage, ArchivedMessage] | None:
        return await self._db.run_interaction("archive bounds", _bounds_txn, user, domain)

    async def purge(self, before: int, limit: int) -> int:
        return await self._db.run_interaction("purge archive", _purge_txn, before, limit)

    async def get_prefs(self, user: str, domain: str) -> ArchivePrefs | None:
        return await self._db.run_interaction("get archive prefs", _get_prefs_txn, user, domain)

    async def set_prefs(self, user: str, domain: str, prefs: ArchivePrefs) -> None:
        await self._db.run_interaction("set archive prefs", _set_prefs_txn, user, domain, prefs)


# Rows per INSERT statement: one statement binds all its rows at once, so the
# pool thread takes the GIL a few times per batch rather than several times per
# row (on a busy reactor each of those waits costs up to a switch interval).
# 8 parameters a row stays under SQLite's oldest limit of 999 per statement.
_ROWS_PER_INSERT = 120
_USERS_PER_SELECT = 400


def _add_txn(txn: Transaction, entries: Sequence[ArchiveEntry]) -> int:
    # Entries for accounts that do not exist (a message to a user who never was)
    # are left out rather than failing the whole batch on the foreign key.
    users = sorted({(e.domain, e.user) for e in entries})
    known: set[tuple[str, str]] = set()
    for i in range(0, len(users), _USERS_PER_SELECT):
        chunk = users[i:i + _USERS_PER_SELECT]
        marks = ", ".join(["(?, ?)"] * len(chunk))
        txn.execute(f"SELECT domain, username FROM accounts WHERE (domain, username) IN (VALUES {marks})",
                    [part for pair in chunk for part in pair])
        known.update((str(row[0]), str(row[1])) for row in txn.fetchall())
    rows = [(e.domain, e.user, e.archive_id, e.timestamp, e.with_jid, e.with_resource, int(e.outgoing), e.stanza)
            for e in entries if (e.domain, e.user) in known]
    for i in range(0, len(rows), _ROWS_PER_INSERT):
        batch = rows[i:i + _ROWS_PER_INSERT]
        marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(batch))
        txn.execute("INSERT INTO archive (domain, username, archive_id, ts, with_jid, with_resource, outgoing, stanza)"
                    f" VALUES {marks}", [value for row in batch for value in row])
    return len(rows)


def _query_txn(txn: Transaction, user: str, domain: str, q: ArchiveQuery) -> ArchivePage:
    filters: dict[str, Any] = {}
    if q.with_jid is not None:
        filters["with_jid"] = q.with_jid
        if q.with_resource is not None:
            filters["with_resource"] = q.with_resource
    return page_txn(txn, "archive", {"domain": domain, "username": user}, q, filters)


def position_txn(txn: Transaction, table: str, owner: dict[str, Any], archive_id: str) -> tuple[int, int]:
    """(ts, id) of *archive_id* in *owner*'s rows of *table* (an archive table with
    ts, id and archive_id columns); :class:`UnknownArchiveId` if it is not there."""
    ts = archive_id_timestamp(archive_id)
    if ts is None:
        raise UnknownArchiveId(archive_id)
    columns = " AND ".join(f"{column} = ?" for column in owner)
    txn.execute(f"SELECT ts, id FROM {table} WHERE {columns} AND ts = ? AND archive_id = ?",
                (*owner.values(), ts, archive_id))
    row = txn.fetchone()
    if row is None:
        raise UnknownArchiveId(archive_id)
    return int(row[0]), int(row[1])


def page_txn(txn: Transaction, table: str, owner: dict[str, Any], q: ArchiveQuery,
             filters: dict[str, Any] | None = None) -> ArchivePage:
    """One page of *owner*'s rows of *table* for *q* (time range, ids, RSM paging
    by archive id or index), with *filters* as extra equality conditions.  Shared by
    the users' archive and the rooms' (:mod:`fedxmpp.storage.muc`)."""
    conditions = {**owner, **(filters or {})}
    where = [f"{column} = ?" for column in conditions]
    args: list[Any] = list(conditions.values())

    def position(archive_id: str) -> tuple[int, int]:
        return position_txn(txn, table, owner, archive_id)

    if q.start is not None:
        where.append("ts >= ?")
        args.append(q.start)
    if q.end is not None:
        where.append("ts <= ?")
        args.append(q.end)
    if q.ids is not None:
        ids = [position(archive_id)[1] for archive_id in sorted(set(q.ids))]
        where.append(f"id IN ({', '.join('?' * len(ids))})" if ids else "0 = 1")
        args.extend(ids)
    for archive_id, op in ((q.after_id, ">"), (q.before_id, "<")):
        if archive_id is not None:
            where.append(f"(ts, id) {op} (?, ?)")
            args.extend(position(archive_id))
    result_set = " AND ".join(where)
    txn.execute(f"SELECT COUNT(*) FROM {table} WHERE {result_set}", args)
    row = txn.fetchone()
    count = int(row[0]) if row else 0

    page_where, page_args = list(where), list(args)
    backward = q.before is not None
    if q.after is not None:
        page_where.append("(ts, id) > (?, ?)")
        page_args.extend(position(q.after))
    if q.before:
        page_where.append("(ts, id) < (?, ?)")
        page_args.extend(position(q.before))
    if q.max <= 0:
        return ArchivePage([], count, None, count == 0)
    order = "DESC" if backward else "ASC"
    sql = (f"SELECT archive_id, ts, id, stanza FROM {table} WHERE {' AND '.join(page_where)}"
           f" ORDER BY ts {order}, id {order} LIMIT ?")
    page_args.append(q.max + 1)
    if q.index is not None and not backward and q.after is None:
        sql += " OFFSET ?"
        page_args.append(q.index)
    txn.execute(sql, page_args)
    rows = txn.fetchall()
    complete = len(rows) <= q.max
    rows = rows[:q.max]
    if backward:
        rows.reverse()
    if not rows:
        return ArchivePage([], count, None, complete)
    txn.execute(f"SELECT COUNT(*) FROM {table} WHERE {result_set} AND (ts, id) < (?, ?)",
                (*args, rows[0][1], rows[0][2]))
    row = txn.fetchone()
    first_index = int(row[0]) if row else 0
    messages = [ArchivedMessage(str(r[0]), int(r[1]), str(r[3])) for r in rows]
    return ArchivePage(messages, count, first_index, complete)


def _bounds_txn(txn: Transaction, user: str, domain: str) -> tuple[ArchivedMessage, ArchivedMessage] | None:
    ends = []
    for order in ("ASC", "DESC"):
        txn.execute("SELECT archive_id, ts, stanza FROM archive WHERE domain = ? AND username = ?"
                    f" ORDER BY ts {order}, id {order} LIMIT 1", (domain, user))
        row = txn.fetchone()
        if row is None:
            return None
        ends.append(ArchivedMessage(str(row[0]), int(row[1]), str(row[2])))
    return ends[0], ends[1]


def _purge_txn(txn: Transaction, before: int, limit: int) -> int:
    txn.execute("DELETE FROM archive WHERE id IN (SELECT id FROM archive WHERE ts < ? ORDER BY ts LIMIT ?)",
                (before, limit))
    return txn.rowcount


def _get_prefs_txn(txn: Transaction, user: str, domain: str) -> ArchivePrefs | None:
    txn.execute("SELECT default_mode, always_json, never_json FROM archive_prefs WHERE domain = ? AND username = ?",
                (domain, user))
    row = txn.fetchone()
    if row is None:
        return None
    return ArchivePrefs(str(row[0]), frozenset(json.loads(row[1])), frozenset(json.loads(row[2])))


def _set_prefs_txn(txn: Transaction, user: str, domain: str, prefs: ArchivePrefs) -> None:
    try:
        txn.execute("INSERT INTO archive_prefs (domain, username, default_mode, always_json, never_json)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain, username) DO UPDATE SET"
                    " default_mode = excluded.default_mode, always_json = excluded.always_json,"
                    " never_json = excluded.never_json",
                    (domain, user, prefs.default, json.dumps(sorted(prefs.always)), json.dumps(sorted(prefs.never))))
    except ConstraintViolation:
        raise NoSuchAccount(user, domain) from None
