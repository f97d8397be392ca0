"""Stanzas held for hibernating sessions, in SQL: the :class:`~fedxmpp.storage.PendingStore` implementation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation
from fedxmpp.storage.group_commit import GroupCommit


@dataclass(frozen=True)
class PendingStanza:
    resume_id: str
    user: str
    domain: str
    resource: str
    stanza: str


class SqlPendingStore:
    """Rows of ``sm_pending``, oldest first per session."""

    def __init__(self, database: Database) -> None:
        self._db = database
        # Adds that arrive while one is being written share the next transaction.
        self._adds = GroupCommit(database, "store stanzas of hibernating sessions", _add_many_txn)

    async def add(self, rows: Sequence[PendingStanza]) -> None:
        if rows:
            await self._adds.submit(list(rows), int(time.time()))

    async def remove(self, resume_id: str) -> None:
        await self._db.run_interaction("forget a hibernating session's stanzas", _remove_txn, resume_id)

    async def all(self) -> list[PendingStanza]:
        return await self._db.run_interaction("read stanzas of hibernating sessions", _all_txn)


def _add_txn(txn: Transaction, rows: list[PendingStanza], now: int) -> None:
    for row in rows:
        try:
            txn.execute("INSERT INTO sm_pending (resume_id, domain, username, resource, stanza, stored_ts)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (row.resume_id, row.domain, row.user, row.resource, row.stanza, now))
        except ConstraintViolation:
            pass  # the account is gone: nothing to keep for it


def _add_many_txn(txn: Transaction, calls: Sequence[tuple[list[PendingStanza], int]]) -> list[None]:
    for rows, now in calls:
        _add_txn(txn, rows, now)
    return [None] * len(calls)


def _remove_txn(txn: Transaction, resume_id: str) -> None:
    txn.execute("DELETE FROM sm_pending WHERE resume_id = ?", (resume_id,))


def _all_txn(txn: Transaction) -> list[PendingStanza]:
    txn.execute("SELECT resume_id, username, domain, resource, stanza FROM sm_pending ORDER BY id")
    return [PendingStanza(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in txn.fetchall()]
