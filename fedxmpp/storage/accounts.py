"""Accounts kept in SQL: the :class:`~fedxmpp.storage.AccountStore` implementation.

PBKDF2 never runs on the reactor thread: every derivation goes to the reactor's
thread pool (``hashlib.pbkdf2_hmac`` releases the GIL, so derivations spread
over cores).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Sequence, TypeVar

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.threads import deferToThreadPool

from fedxmpp.storage.credentials import (
    HASH_NAMES,
    CredentialSet,
    HashName,
    ScramCredentials,
    derive_all,
    verify_password,
)
from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import AccountExists, ConstraintViolation, NoSuchAccount

T = TypeVar("T")

# How many accounts create_many() derives per thread-pool job.
_CHUNK = 64


class SqlAccountStore:
    """Accounts and SCRAM credentials in the ``accounts`` and ``scram_credentials`` tables.

    *reactor* must provide ``getThreadPool()`` and ``callFromThread()``; new
    credentials get *iterations* PBKDF2 rounds.
    """

    def __init__(self, database: Database, reactor: Any, *, iterations: int) -> None:
        self._db = database
        self._reactor = reactor
        self.scram_iterations = iterations
        # For unknown users check_password() spends the same PBKDF2 time on these
        # random credentials, which no password matches.
        self._decoy = ScramCredentials(salt=os.urandom(16), iterations=iterations,
                                       stored_key=os.urandom(32), server_key=os.urandom(32))

    async def create(self, user: str, domain: str, password: str) -> None:
        creds = await self._in_thread(derive_all, password, self.scram_iterations)
        await self._db.run_interaction("create account", _insert_accounts_txn,
                                       [(user, domain, creds)], int(time.time()))

    async def create_many(self, accounts: Iterable[tuple[str, str, str]]) -> int:
        entries = list(accounts)
        iterations = self.scram_iterations

        def derive_chunk(chunk: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, CredentialSet]]:
            return [(u, d, derive_all(p, iterations)) for u, d, p in chunk]

        chunks = [entries[i:i + _CHUNK] for i in range(0, len(entries), _CHUNK)]
        try:
            results = await gatherResults([self._in_thread(derive_chunk, c) for c in chunks],
                                          consumeErrors=True)
        except FirstError as e:
            e.subFailure.raiseException()
        return await self.create_many_prepared([row for chunk in results for row in chunk])

    async def create_many_prepared(self, accounts: Iterable[tuple[str, str, CredentialSet]]) -> int:
        rows = list(accounts)
        return await self._db.run_interaction("create accounts", _insert_accounts_txn,
                                              rows, int(time.time()))

    async def set_password(self, user: str, domain: str, password: str) -> None:
        creds = await self._in_thread(derive_all, password, self.scram_iterations)
        await self._db.run_interaction("set password", _replace_credentials_txn, user, domain, creds)

    async def delete(self, user: str, domain: str) -> None:
        await self._db.run_interaction("delete account", _delete_account_txn, user, domain)

    async def exists(self, user: str, domain: str) -> bool:
        return await self._db.run_interaction("account exists", _exists_txn, user, domain)

    async def list_users(self, domain: str) -> list[str]:
        return await self._db.run_interaction("list users", _list_users_txn, domain)

    async def scram_credentials(self, user: str, domain: str,
                                hash_name: HashName) -> ScramCredentials | None:
        return await self._db.run_interaction("read credentials", _credentials_txn,
                                              user, domain, hash_name)

    async def check_password(self, user: str, domain: str, password: str) -> bool:
        creds = await self._db.run_interaction("read credentials", _strongest_credentials_txn,
                                               user, domain)
        if creds is None:
            # Same work as for a real account, so timing does not reveal which names exist.
            await self._in_thread(verify_password, self._decoy, password)
            return False
        return await self._in_thread(verify_password, creds, password)

    def _in_thread(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)


def _insert_accounts_txn(txn: Transaction, accounts: Sequence[tuple[str, str, CredentialSet]],
                         now: int) -> int:
    for user, domain, creds in accounts:
        try:
            txn.execute("INSERT INTO accounts (domain, username, created_ts) VALUES (?, ?, ?)",
                        (domain, user, now))
        except ConstraintViolation:
            raise AccountExists(user, domain) from None
        _insert_credentials_txn(txn, user, domain, creds)
    return len(accounts)


def _insert_credentials_txn(txn: Transaction, user: str, domain: str, creds: CredentialSet) -> None:
    unknown = set(creds) - set(HASH_NAMES)
    if unknown:
        raise ValueError(f"unknown SCRAM hash names {sorted(unknown)}")
    txn.executemany(
        "INSERT INTO scram_credentials"
        " (domain, username, hash_name, salt, iterations, stored_key, server_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(domain, user, name, c.salt, c.iterations, c.stored_key, c.server_key)
         for name, c in creds.items()])


def _replace_credentials_txn(txn: Transaction, user: str, domain: str, creds: CredentialSet) -> None:
    if not _exists_txn(txn, user, domain):
        raise NoSuchAccount(user, domain)
    txn.execute("DELETE FROM scram_credentials WHERE domain = ? AND username = ?", (domain, user))
    _insert_credentials_txn(txn, user, domain, creds)


def _delete_account_txn(txn: Transaction, user: str, domain: str) -> None:
    # Credentials, roster, roster version, offline messages and keyval documents
    # go with it (ON DELETE CASCADE on each of those tables).
    txn.execute("DELETE FROM accounts WHERE domain = ? AND username = ?", (domain, user))
    if txn.rowcount != 1:
        raise NoSuchAccount(user, domain)


def _exists_txn(txn: Transaction, user: str, domain: str) -> bool:
    txn.execute("SELECT 1 FROM accounts WHERE domain = ? AND username = ?", (domain, user))
    return txn.fetchone() is not None


def _list_users_txn(txn: Transaction, domain: str) -> list[str]:
    txn.execute("SELECT username FROM accounts WHERE domain = ? ORDER BY username", (domain,))
    return [row[0] for row in txn.fetchall()]


def _credentials_txn(txn: Transaction, user: str, domain: str,
                     hash_name: str) -> ScramCredentials | None:
    txn.execute(
        "SELECT salt, iterations, stored_key, server_key FROM scram_credentials"
        " WHERE domain = ? AND username = ? AND hash_name = ?",
        (domain, user, hash_name))
    return _credentials_from_row(txn.fetchone())


def _strongest_credentials_txn(txn: Transaction, user: str, domain: str) -> ScramCredentials | None:
    txn.execute(
        "SELECT salt, iterations, stored_key, server_key FROM scram_credentials"
        " WHERE domain = ? AND username = ?"
        " ORDER BY CASE hash_name WHEN 'sha-256' THEN 0 ELSE 1 END LIMIT 1",
        (domain, user))
    return _credentials_from_row(txn.fetchone())


def _credentials_from_row(row: tuple[Any, ...] | None) -> ScramCredentials | None:
    if row is None:
        return None
    salt, iterations, stored_key, server_key = row
    return ScramCredentials(salt=bytes(salt), iterations=int(iterations),
                            stored_key=bytes(stored_key), server_key=bytes(server_key))
