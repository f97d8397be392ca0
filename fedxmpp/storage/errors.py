"""Exceptions raised by every storage engine and store.

Callers catch these, never a DB-API driver's own exception classes: the
:class:`~fedxmpp.storage.database.Database` translates driver errors into
:class:`StorageError` so that code above the storage layer stays engine-neutral.
"""

from __future__ import annotations


class StorageError(Exception):
    """The database failed (I/O error, lock timeout, bad schema...): the request
    may succeed later or after an operator fixes something."""


class SchemaError(StorageError):
    """The database schema cannot be used by this version of fedxmpp."""


class ConstraintViolation(StorageError):
    """A write broke a uniqueness or foreign-key constraint."""


class AccountError(Exception):
    """A request about one account that cannot be honoured as asked."""

    def __init__(self, message: str, user: str, domain: str) -> None:
        super().__init__(message)
        self.user = user
        self.domain = domain


class AccountExists(AccountError):
    """An account with that address already exists."""

    def __init__(self, user: str, domain: str) -> None:
        super().__init__(f"account {user}@{domain} already exists", user, domain)


class NoSuchAccount(AccountError):
    """No account with that address exists."""

    def __init__(self, user: str, domain: str) -> None:
        super().__init__(f"no such account {user}@{domain}", user, domain)
