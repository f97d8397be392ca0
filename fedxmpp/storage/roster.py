"""Rosters kept in SQL: the :class:`~fedxmpp.storage.RosterStore` implementation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, NoSuchAccount

Subscription = Literal["none", "to", "from", "both"]
SUBSCRIPTIONS: tuple[Subscription, ...] = ("none", "to", "from", "both")


@dataclass(frozen=True)
class RosterItem:
    """One contact in a user's roster (RFC 6121 §2.1.2), with the server-side state
    of the subscription state machine (§3, Appendix A)."""

    #: The contact's bare JID, prepared (``str(JID)``).
    jid: str
    name: str | None
    subscription: Subscription
    #: Pending-out: the user asked for the contact's presence ("ask='subscribe'").
    ask: bool
    #: Pending-in: the contact asked for the user's presence; not yet answered.
    pending_in: bool
    groups: tuple[str, ...]
    #: Pre-approval (§3.4): the user already approved a future request from the contact.
    approved: bool = False
    #: The row only remembers a pending inbound request from someone the user never
    #: added: it is not shown in the roster until the user acts on the request.
    hidden: bool = False


class SqlRosterStore:
    """Roster items in ``roster_items``, versions in ``roster_versions``.

    Every write bumps the user's version in the same transaction, so a version
    names one roster state (RFC 6121 §2.6).
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_roster(self, user: str, domain: str) -> tuple[int, list[RosterItem]]:
        return await self._db.run_interaction("get roster", _get_roster_txn, user, domain)

    async def get_item(self, user: str, domain: str, contact: str) -> RosterItem | None:
        return await self._db.run_interaction("get roster item", _get_item_txn, user, domain, contact)

    async def set_item(self, user: str, domain: str, item: RosterItem) -> int:
        if item.subscription not in SUBSCRIPTIONS:
            raise ValueError(f"bad subscription {item.subscription!r}")
        return await self._db.run_interaction("set roster item", _set_item_txn, user, domain, item)

    async def remove_item(self, user: str, domain: str, contact: str) -> int:
        return await self._db.run_interaction("remove roster item", _remove_item_txn, user, domain, contact)


_COLUMNS = "contact, name, subscription, ask, pending_in, groups_json, approved, hidden"


def _item_from_row(row: tuple[Any, ...]) -> RosterItem:
    contact, name, subscription, ask, pending_in, groups, approved, hidden = row
    return RosterItem(jid=contact, name=name, subscription=subscription, ask=bool(ask),
                      pending_in=bool(pending_in), groups=tuple(json.loads(groups)),
                      approved=bool(approved), hidden=bool(hidden))


def _version_txn(txn: Transaction, user: str, domain: str) -> int:
    txn.execute("SELECT version FROM roster_versions WHERE domain = ? AND username = ?", (domain, user))
    row = txn.fetchone()
    return int(row[0]) if row else 0


def _bump_version_txn(txn: Transaction, user: str, domain: str) -> int:
    version = _version_txn(txn, user, domain) + 1
    try:
        txn.execute(
            "INSERT INTO roster_versions (domain, username, version) VALUES (?, ?, ?)"
            " ON CONFLICT (domain, username) DO UPDATE SET version = excluded.version",
            (domain, user, version))
    except ConstraintViolation:
        raise NoSuchAccount(user, domain) from None
    return version


def _get_roster_txn(txn: Transaction, user: str, domain: str) -> tuple[int, list[RosterItem]]:
    version = _version_txn(txn, user, domain)
    txn.execute(f"SELECT {_COLUMNS} FROM roster_items WHERE domain = ? AND username = ? ORDER BY contact",
                (domain, user))
    return version, [_item_from_row(row) for row in txn.fetchall()]


def _get_item_txn(txn: Transaction, user: str, domain: str, contact: str) -> RosterItem | None:
    txn.execute(f"SELECT {_COLUMNS} FROM roster_items WHERE domain = ? AND username = ? AND contact = ?",
                (domain, user, contact))
    row = txn.fetchone()
    return None if row is None else _item_from_row(row)


def _set_item_txn(txn: Transaction, user: str, domain: str, item: RosterItem) -> int:
    version = _bump_version_txn(txn, user, domain)
    txn.execute(
        "INSERT INTO roster_items"
        " (domain, username, contact, name, subscription, ask, pending_in, groups_json, approved, hidden)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (domain, username, contact) DO UPDATE SET"
        " name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,"
        " pending_in = excluded.pending_in, groups_json = excluded.groups_json,"
        " approved = excluded.approved, hidden = excluded.hidden",
        (domain, user, item.jid, item.name, item.subscription, int(item.ask), int(item.pending_in),
         json.dumps(list(item.groups)), int(item.approved), int(item.hidden)))
    return version


def _remove_item_txn(txn: Transaction, user: str, domain: str, contact: str) -> int:
    txn.execute("DELETE FROM roster_items WHERE domain = ? AND username = ? AND contact = ?",
                (domain, user, contact))
    if txn.rowcount == 0:
        return _version_txn(txn, user, domain)
    return _bump_version_txn(txn, user, domain)
