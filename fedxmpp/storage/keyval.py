"""Per-user key/value documents kept in SQL: the :class:`~fedxmpp.storage.KeyValStore`
implementation."""

from __future__ import annotations

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, NoSuchAccount


class SqlKeyValStore:
    """Documents in the ``keyval`` table, keyed by (user, domain, store, key)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, user: str, domain: str, store: str, key: str = "") -> bytes | None:
        return await self._db.run_interaction("keyval get", _get_txn, user, domain, store, key)

    async def set(self, user: str, domain: str, store: str, key: str, value: bytes | None) -> None:
        if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"keyval values are bytes, not {type(value).__name__}")
        await self._db.run_interaction("keyval set", _set_txn, user, domain, store, key,
                                       None if value is None else bytes(value))

    async def list_keys(self, user: str, domain: str, store: str) -> list[str]:
        return await self._db.run_interaction("keyval list", _list_txn, user, domain, store)


def _get_txn(txn: Transaction, user: str, domain: str, store: str, key: str) -> bytes | None:
    txn.execute("SELECT value FROM keyval WHERE domain = ? AND username = ? AND store = ? AND item_key = ?",
                (domain, user, store, key))
    row = txn.fetchone()
    return None if row is None else bytes(row[0])


def _set_txn(txn: Transaction, user: str, domain: str, store: str, key: str, value: bytes | None) -> None:
    if value is None:
        txn.execute("DELETE FROM keyval WHERE domain = ? AND username = ? AND store = ? AND item_key = ?",
                    (domain, user, store, key))
        return
    try:
        txn.execute(
            "INSERT INTO keyval (domain, username, store, item_key, value) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (domain, username, store, item_key) DO UPDATE SET value = excluded.value",
            (domain, user, store, key, value))
    except ConstraintViolation:
        raise NoSuchAccount(user, domain) from None


def _list_txn(txn: Transaction, user: str, domain: str, store: str) -> list[str]:
    txn.execute("SELECT item_key FROM keyval WHERE domain = ? AND username = ? AND store = ? ORDER BY item_key",
                (domain, user, store))
    return [str(row[0]) for row in txn.fetchall()]
