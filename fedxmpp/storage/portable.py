"""Whole accounts in and out in bulk: the :class:`~fedxmpp.storage.PortableStore` implementation.

An :class:`AccountBundle` is everything kept for one account: its SCRAM
credentials, roster, key/value documents, offline messages, PEP nodes with their
items and message archive.  ``fedxmpp import`` and ``fedxmpp export`` (XEP-0227)
move bundles; this module writes and reads them many accounts per transaction,
so that loading thousands of accounts costs a few commits, not one per row.

Writing a batch is one transaction; each account in it is all or nothing: if the
batch fails, every account of it is tried again in a transaction of its own, and
the one that fails is reported with its error while the others are written.

An account that exists already is handled as *existing* says:

* ``skip``: left as it is; nothing of the bundle is written.
* ``merge``: what the bundle names wins, what it does not name stays: its
  credentials replace the account's, its roster items, documents, PEP nodes and
  items replace those of the same key, and its offline and archived messages
  are added unless the same stanza is stored already, so merging the same
  bundle twice changes nothing the second time.
* ``replace``: the account is deleted with everything kept for it, then created
  from the bundle.

The SQL is the portable SQL of the other stores (``?`` placeholders, run through
:class:`~fedxmpp.storage.database.Database`), reusing their ``*_txn`` functions
where one fits, so every engine runs it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal, Sequence

from fedxmpp.storage import accounts as _accounts
from fedxmpp.storage import keyval as _keyval
from fedxmpp.storage import pubsub as _pubsub
from fedxmpp.storage import roster as _roster
from fedxmpp.storage.archive import ArchiveEntry, _add_txn as _archive_add_txn
from fedxmpp.storage.credentials import HASH_NAMES, CredentialSet, HashName, ScramCredentials
from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import AccountError, StorageError
from fedxmpp.storage.pubsub import PubsubItem, PubsubNode
from fedxmpp.storage.roster import RosterItem

Existing = Literal["skip", "merge", "replace"]
EXISTING: tuple[Existing, ...] = ("skip", "merge", "replace")

# PEP items are few per node; an import keeps every item the file holds.
_KEEP_ALL_ITEMS = 1 << 30


@dataclass(frozen=True)
class AccountBundle:
    """Everything kept for one account, as :class:`PortableStore` writes and reads it."""

    user: str
    domain: str
    credentials: CredentialSet
    roster: Sequence[RosterItem] = ()
    #: Key/value documents by (store, key).
    documents: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: Offline messages, oldest first, serialised in jabber:client.
    offline: Sequence[str] = ()
    #: PEP nodes, each with its items oldest first.
    pep: Sequence[tuple[PubsubNode, Sequence[PubsubItem]]] = ()
    #: The message archive, oldest first.
    archive: Sequence[ArchiveEntry] = ()


Outcome = Literal["created", "merged", "replaced", "skipped"]


@dataclass(frozen=True)
class ImportResult:
    user: str
    domain: str
    #: What happened, or None when the account failed (see *error*).
    outcome: Outcome | None
    error: str | None = None


class SqlPortableStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def import_accounts(self, bundles: Sequence[AccountBundle], existing: Existing) -> list[ImportResult]:
        if existing not in EXISTING:
            raise ValueError(f"existing must be one of {EXISTING}, not {existing!r}")
        if not bundles:
            return []
        now = int(time.time())
        try:
            outcomes = await self._db.run_interaction("import accounts", _import_many_txn, bundles, existing, now)
            return [ImportResult(b.user, b.domain, o) for b, o in zip(bundles, outcomes)]
        except (StorageError, AccountError, ValueError):
            if len(bundles) == 1:
                return [await self._import_one(bundles[0], existing, now)]
        # One account spoilt the batch: each on its own, so that only that one fails.
        return [await self._import_one(b, existing, now) for b in bundles]

    async def _import_one(self, bundle: AccountBundle, existing: Existing, now: int) -> ImportResult:
        try:
            [outcome] = await self._db.run_interaction("import account", _import_many_txn, [bundle], existing, now)
        except (StorageError, AccountError, ValueError) as e:
            return ImportResult(bundle.user, bundle.domain, None, str(e))
        return ImportResult(bundle.user, bundle.domain, outcome)

    async def export_accounts(self, domain: str, users: Sequence[str]) -> list[AccountBundle]:
        return await self._db.run_interaction("export accounts", _export_many_txn, domain, list(users))


# -- writing ----------------------------------------------------------------------------------

def _import_many_txn(txn: Transaction, bundles: Sequence[AccountBundle], existing: Existing,
                     now: int) -> list[Outcome]:
    return [_import_txn(txn, bundle, existing, now) for bundle in bundles]


def _import_txn(txn: Transaction, b: AccountBundle, existing: Existing, now: int) -> Outcome:
    if not b.credentials:
        raise ValueError(f"{b.user}@{b.domain} has no credentials")
    outcome: Outcome = "created"
    if _accounts._exists_txn(txn, b.user, b.domain):
        if existing == "skip":
            return "skipped"
        if existing == "replace":
            _accounts._delete_account_txn(txn, b.user, b.domain)
            outcome = "replaced"
        else:
            outcome = "merged"
    if outcome == "merged":
        _accounts._replace_credentials_txn(txn, b.user, b.domain, b.credentials)
    else:
        _accounts._insert_accounts_txn(txn, [(b.user, b.domain, b.credentials)], now)
    merging = outcome == "merged"
    if b.roster:
        _set_roster_items_txn(txn, b.user, b.domain, b.roster)
    for (store, key), value in b.documents.items():
        _keyval._set_txn(txn, b.user, b.domain, store, key, value)
    if b.offline:
        _add_offline_txn(txn, b.user, b.domain, b.offline, now, skip_stored=merging)
    for node, items in b.pep:
        if not _pubsub._create_txn(txn, b.user, b.domain, node, now):
            _pubsub._update_txn(txn, b.user, b.domain, node)
        for item in items:
            _pubsub._publish_txn(txn, b.user, b.domain, node.node, item, _KEEP_ALL_ITEMS)
    if b.archive:
        entries = list(b.archive)
        if merging:
            stored = _archived_stanzas_txn(txn, b.user, b.domain)
            entries = [e for e in entries if (e.timestamp, e.stanza) not in stored]
        _archive_add_txn(txn, entries)
    return outcome


def _set_roster_items_txn(txn: Transaction, user: str, domain: str, items: Sequence[RosterItem]) -> None:
    """Create or replace the rows of *items* with one version bump (one roster change)."""
    for item in items:
        if item.subscription not in _roster.SUBSCRIPTIONS:
            raise ValueError(f"bad subscription {item.subscription!r}")
    _roster._bump_version_txn(txn, user, domain)
    txn.executemany(
        "INSERT INTO roster_items"
        " (domain, username, contact, name, subscription, ask, pending_in, groups_json, approved, hidden)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (domain, username, contact) DO UPDATE SET"
        " name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,"
        " pending_in = excluded.pending_in, groups_json = excluded.groups_json,"
        " approved = excluded.approved, hidden = excluded.hidden",
        [(domain, user, i.jid, i.name, i.subscription, int(i.ask), int(i.pending_in),
          json.dumps(list(i.groups)), int(i.approved), int(i.hidden)) for i in items])


def _add_offline_txn(txn: Transaction, user: str, domain: str, stanzas: Sequence[str], now: int, *,
                     skip_stored: bool) -> None:
    if skip_stored:
        txn.execute("SELECT stanza FROM offline_messages WHERE domain = ? AND username = ?", (domain, user))
        stored = {str(row[0]) for row in txn.fetchall()}
        stanzas = [s for s in stanzas if s not in stored]
    txn.executemany("INSERT INTO offline_messages (domain, username, stanza, stored_ts) VALUES (?, ?, ?, ?)",
                    [(domain, user, s, now) for s in stanzas])


def _archived_stanzas_txn(txn: Transaction, user: str, domain: str) -> set[tuple[int, str]]:
    txn.execute("SELECT ts, stanza FROM archive WHERE domain = ? AND username = ?", (domain, user))
    return {(int(row[0]), str(row[1])) for row in txn.fetchall()}


# -- reading ----------------------------------------------------------------------------------

def _export_many_txn(txn: Transaction, domain: str, users: list[str]) -> list[AccountBundle]:
    bundles = []
    for user in users:
        bundle = _export_txn(txn, user, domain)
        if bundle is not None:
            bundles.append(bundle)
    return bundles


def _export_txn(txn: Transaction, user: str, domain: str) -> AccountBundle | None:
    credentials: dict[HashName, ScramCredentials] = {}
    for name in HASH_NAMES:
        creds = _accounts._credentials_txn(txn, user, domain, name)
        if creds is not None:
            credentials[name] = creds
    if not credentials and not _accounts._exists_txn(txn, user, domain):
        return None  # deleted meanwhile
    _, roster = _roster._get_roster_txn(txn, user, domain)
    txn.execute("SELECT store, item_key, value FROM keyval WHERE domain = ? AND username = ?"
                " ORDER BY store, item_key", (domain, user))
    documents = {(str(r[0]), str(r[1])): bytes(r[2]) for r in txn.fetchall()}
    txn.execute("SELECT stanza FROM offline_messages WHERE domain = ? AND username = ? ORDER BY id", (domain, user))
    offline = [str(r[0]) for r in txn.fetchall()]
    pep = [(node, _pubsub._items_txn(txn, user, domain, node.node, None, None))
           for node in _pubsub._nodes_txn(txn, user, domain)]
    txn.execute("SELECT archive_id, ts, with_jid, with_resource, outgoing, stanza FROM archive"
                " WHERE domain = ? AND username = ? ORDER BY ts, id", (domain, user))
    archive = [ArchiveEntry(user, domain, str(r[0]), int(r[1]), str(r[2]), str(r[3]), bool(r[4]), str(r[5]))
               for r in txn.fetchall()]
    return AccountBundle(user, domain, credentials, roster, documents, offline, pep, archive)
