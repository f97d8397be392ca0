"""Offline messages kept in SQL: the :class:`~fedxmpp.storage.OfflineStore` implementation."""

from __future__ import annotations

import time
from typing import Sequence

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, NoSuchAccount
from fedxmpp.storage.group_commit import GroupCommit


class SqlOfflineStore:
    """Serialised stanzas in ``offline_messages``, oldest first."""

    def __init__(self, database: Database) -> None:
        self._db = database
        # Stores that arrive while one is being written share the next transaction.
        self._stores = GroupCommit(database, "store offline messages", _store_many_txn)

    async def store(self, user: str, domain: str, stanza_xml: str, quota: int) -> bool:
        return await self._stores.submit(user, domain, stanza_xml, quota, int(time.time()))

    async def read(self, user: str, domain: str, after: int, limit: int) -> list[tuple[int, str]]:
        return await self._db.run_interaction("read offline messages", _read_txn, user, domain, after, limit)

    async def delete(self, user: str, domain: str, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        return await self._db.run_interaction("delete offline messages", _delete_txn, user, domain, list(ids))

    async def count(self, user: str, domain: str) -> int:
        return await self._db.run_interaction("count offline messages", _count_txn, user, domain)


def _count_txn(txn: Transaction, user: str, domain: str) -> int:
    txn.execute("SELECT COUNT(*) FROM offline_messages WHERE domain = ? AND username = ?", (domain, user))
    row = txn.fetchone()
    return int(row[0]) if row else 0


def _store_txn(txn: Transaction, user: str, domain: str, stanza_xml: str, quota: int, now: int) -> bool:
    if _count_txn(txn, user, domain) >= quota:
        return False
    try:
        txn.execute("INSERT INTO offline_messages (domain, username, stanza, stored_ts) VALUES (?, ?, ?, ?)",
                    (domain, user, stanza_xml, now))
    except ConstraintViolation:
        raise NoSuchAccount(user, domain) from None
    return True


def _read_txn(txn: Transaction, user: str, domain: str, after: int, limit: int) -> list[tuple[int, str]]:
    txn.execute("SELECT id, stanza FROM offline_messages WHERE domain = ? AND username = ? AND id > ? "
                "ORDER BY id LIMIT ?", (domain, user, after, limit))
    return [(int(row[0]), str(row[1])) for row in txn.fetchall()]


# SQLite allows 999 parameters in one statement before 3.32; stay well below.
_DELETE_CHUNK = 500


def _delete_txn(txn: Transaction, user: str, domain: str, ids: list[int]) -> int:
    deleted = 0
    for start in range(0, len(ids), _DELETE_CHUNK):
        chunk = ids[start:start + _DELETE_CHUNK]
        marks = ", ".join("?" * len(chunk))
        txn.execute(f"DELETE FROM offline_messages WHERE domain = ? AND username = ? AND id IN ({marks})",
                    (domain, user, *chunk))
        deleted += max(txn.rowcount, 0)
    return deleted


def _store_many_txn(txn: Transaction,
                    calls: Sequence[tuple[str, str, str, int, int]]) -> list[bool | NoSuchAccount]:
    """:func:`_store_txn` for each call, in one transaction; a missing account is
    that call's result, not the batch's failure."""
    results: list[bool | NoSuchAccount] = []
    for user, domain, stanza_xml, quota, now in calls:
        try:
            results.append(_store_txn(txn, user, domain, stanza_xml, quota, now))
        except NoSuchAccount as e:
            results.append(e)
    return results
