"""An in-memory AccountStore for tests of code that authenticates.

It derives credentials on the calling thread, which is fine in tests and the
reason it is not production code.
"""

from __future__ import annotations

from typing import Iterable

from fedxmpp.storage import AccountExists, NoSuchAccount, StorageError
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
