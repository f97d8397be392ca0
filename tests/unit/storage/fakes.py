"""In-memory stores for unit tests: accounts, roster, offline messages, keyval.

The account store derives credentials on the calling thread, which is fine in tests and the
reason it is not production code.
"""

from __future__ import annotations

from typing import Iterable

from fedxmpp.storage import AccountExists, NoSuchAccount, RosterItem, StorageError
from fedxmpp.storage.credentials import (
    CredentialSet,
    HashName,
    ScramCredentials,
    derive_all,
    verify_password,
)


class MemoryAccountStore:
    def __init__(self, iterations: int = 4096) -> None:
        self.scram_iterations = iterations
        self.accounts: dict[tuple[str, str], dict[HashName, ScramCredentials]] = {}
        #: When set, every call raises this (to simulate a failing database).
        self.broken: StorageError | None = None
        self.lookups: list[tuple[str, str, str]] = []

    def _check(self) -> None:
        if self.broken is not None:
            raise self.broken

    def put(self, user: str, domain: str, creds: CredentialSet) -> None:
        self.accounts[(user, domain)] = dict(creds)

    async def create(self, user: str, domain: str, password: str) -> None:
        self._check()
        if (user, domain) in self.accounts:
            raise AccountExists(user, domain)
        self.accounts[(user, domain)] = derive_all(password, self.scram_iterations)

    async def create_many(self, accounts: Iterable[tuple[str, str, str]]) -> int:
        return await self.create_many_prepared(
            (u, d, derive_all(p, self.scram_iterations)) for u, d, p in accounts)

    async def create_many_prepared(self, accounts: Iterable[tuple[str, str, CredentialSet]]) -> int:
        self._check()
        rows = list(accounts)
        for user, domain, _ in rows:
            if (user, domain) in self.accounts:
                raise AccountExists(user, domain)
        for user, domain, creds in rows:
            self.accounts[(user, domain)] = dict(creds)
        return len(rows)

    async def set_password(self, user: str, domain: str, password: str) -> None:
        self._check()
        if (user, domain) not in self.accounts:
            raise NoSuchAccount(user, domain)
        self.accounts[(user, domain)] = derive_all(password, self.scram_iterations)

    async def delete(self, user: str, domain: str) -> None:
        self._check()
        if self.accounts.pop((user, domain), None) is None:
            raise NoSuchAccount(user, domain)

    async def exists(self, user: str, domain: str) -> bool:
        self._check()
        return (user, domain) in self.accounts

    async def list_users(self, domain: str) -> list[str]:
        self._check()
        return sorted(u for u, d in self.accounts if d == domain)

    async def scram_credentials(self, user: str, domain: str,
                                hash_name: HashName) -> ScramCredentials | None:
        self._check()
        self.lookups.append((user, domain, hash_name))
        return self.accounts.get((user, domain), {}).get(hash_name)

    async def check_password(self, user: str, domain: str, password: str) -> bool:
        self._check()
        creds = self.accounts.get((user, domain), {}).get("sha-256")
        return creds is not None and verify_password(creds, password)


def _check_account(accounts: MemoryAccountStore | None, user: str, domain: str) -> None:
    if accounts is not None and (user, domain) not in accounts.accounts:
        raise NoSuchAccount(user, domain)


class MemoryRosterStore:
    """An in-memory RosterStore; with *accounts*, writes for unknown accounts raise
    NoSuchAccount as the SQL store does."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts
        self.rosters: dict[tuple[str, str], dict[str, RosterItem]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.writes = 0

    async def get_roster(self, user: str, domain: str) -> tuple[int, list[RosterItem]]:
        items = self.rosters.get((user, domain), {})
        return self.versions.get((user, domain), 0), [items[k] for k in sorted(items)]

    async def get_item(self, user: str, domain: str, contact: str) -> RosterItem | None:
        return self.rosters.get((user, domain), {}).get(contact)

    async def set_item(self, user: str, domain: str, item: RosterItem) -> int:
        _check_account(self.accounts, user, domain)
        self.writes += 1
        self.rosters.setdefault((user, domain), {})[item.jid] = item
        return self._bump(user, domain)

    async def remove_item(self, user: str, domain: str, contact: str) -> int:
        self.writes += 1
        if self.rosters.get((user, domain), {}).pop(contact, None) is None:
            return self.versions.get((user, domain), 0)
        return self._bump(user, domain)

    def _bump(self, user: str, domain: str) -> int:
        self.versions[(user, domain)] = self.versions.get((user, domain), 0) + 1
        return self.versions[(user, domain)]


class MemoryOfflineStore:
    """An in-memory OfflineStore (with *accounts*: NoSuchAccount for unknown ones)."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts
        self.messages: dict[tuple[str, str], list[str]] = {}

    async def store(self, user: str, domain: str, stanza_xml: str, quota: int) -> bool:
        _check_account(self.accounts, user, domain)
        queue = self.messages.setdefault((user, domain), [])
        if len(queue) >= quota:
            return False
        queue.append(stanza_xml)
        return True

    async def take_all(self, user: str, domain: str) -> list[str]:
        return self.messages.pop((user, domain), [])

    async def count(self, user: str, domain: str) -> int:
        return len(self.messages.get((user, domain), []))


class MemoryKeyValStore:
    """An in-memory KeyValStore (with *accounts*: NoSuchAccount for unknown ones)."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts
        self.values: dict[tuple[str, str, str, str], bytes] = {}

    async def get(self, user: str, domain: str, store: str, key: str = "") -> bytes | None:
        return self.values.get((user, domain, store, key))

    async def set(self, user: str, domain: str, store: str, key: str, value: bytes | None) -> None:
        if value is None:
            self.values.pop((user, domain, store, key), None)
        else:
            _check_account(self.accounts, user, domain)
            self.values[(user, domain, store, key)] = bytes(value)

    async def list_keys(self, user: str, domain: str, store: str) -> list[str]:
        return sorted(k for u, d, s, k in self.values if (u, d, s) == (user, domain, store))


class MemoryStorage:
    """A Storage of in-memory stores, for unit tests of code above storage.  Writes
    for users without an account raise NoSuchAccount, as with SQL; tests create
    accounts with ``storage.accounts.put(user, domain, {})``."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts or MemoryAccountStore()
        self.roster = MemoryRosterStore(self.accounts)
        self.offline = MemoryOfflineStore(self.accounts)
        self.keyval = MemoryKeyValStore(self.accounts)

    def close(self) -> None:
        pass
