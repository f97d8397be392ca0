"""XEP-0357 push registrations in SQL: the :class:`~fedxmpp.storage.PushStore` implementation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, NoSuchAccount


@dataclass(frozen=True)
class PushRegistration:
    """One app server a device of the account is woken through.

    *service* is the app server's JID, *node* its node ("" when the client gave
    none), *options* the fields of the client's publish-options form (FORM_TYPE
    left out), sent back with every notification.
    """

    service: str
    node: str
    options: dict[str, list[str]] = field(default_factory=dict, compare=False)
    enabled_at: int = field(default=0, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.service, self.node


class SqlPushStore:
    """Rows of ``push_registrations``, keyed by (domain, username, service, node)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def enable(self, user: str, domain: str, registration: PushRegistration, keep: int) -> list[PushRegistration]:
        await self._db.run_interaction("enable a push registration", _enable_txn, user, domain, registration, keep)
        return await self.registrations(user, domain)

    async def disable(self, user: str, domain: str, service: str, node: str | None) -> int:
        return await self._db.run_interaction("disable push registrations", _disable_txn, user, domain, service, node)

    async def registrations(self, user: str, domain: str) -> list[PushRegistration]:
        return await self._db.run_interaction("read push registrations", _read_txn, user, domain)


def _enable_txn(txn: Transaction, user: str, domain: str, registration: PushRegistration, keep: int) -> None:
    try:
        txn.execute(
            "INSERT INTO push_registrations (domain, username, service, node, options, enabled_ts)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (domain, username, service, node)"
            " DO UPDATE SET options = excluded.options, enabled_ts = excluded.enabled_ts",
            (domain, user, registration.service, registration.node, json.dumps(registration.options),
             registration.enabled_at))
    except ConstraintViolation:
        raise NoSuchAccount(user, domain) from None
    # Beyond *keep* registrations the oldest go: a device re-enabling keeps its place.
    txn.execute("SELECT service, node FROM push_registrations WHERE domain = ? AND username = ?"
                " ORDER BY enabled_ts DESC, service, node", (domain, user))
    for service, node in txn.fetchall()[keep:]:
        txn.execute("DELETE FROM push_registrations WHERE domain = ? AND username = ? AND service = ? AND node = ?",
                    (domain, user, service, node))


def _disable_txn(txn: Transaction, user: str, domain: str, service: str, node: str | None) -> int:
    if node is None:
        txn.execute("DELETE FROM push_registrations WHERE domain = ? AND username = ? AND service = ?",
                    (domain, user, service))
    else:
        txn.execute("DELETE FROM push_registrations WHERE domain = ? AND username = ? AND service = ? AND node = ?",
                    (domain, user, service, node))
    return max(txn.rowcount, 0)


def _read_txn(txn: Transaction, user: str, domain: str) -> list[PushRegistration]:
    txn.execute("SELECT service, node, options, enabled_ts FROM push_registrations"
                " WHERE domain = ? AND username = ? ORDER BY enabled_ts, service, node", (domain, user))
    return [PushRegistration(str(r[0]), str(r[1]), _options(str(r[2])), int(r[3])) for r in txn.fetchall()]


def _options(text: str) -> dict[str, list[str]]:
    loaded = json.loads(text)
    return {str(k): [str(v) for v in values] for k, values in loaded.items()}
