"""Persistent state behind async interfaces: one ``typing.Protocol`` per store.

Code above the storage layer knows only the protocols here and the exceptions in
:mod:`fedxmpp.storage.errors`; :func:`open_storage` picks the engine named by the
configuration, applies pending schema migrations and builds the stores.

Names passed to stores are already prepared: ``user`` is a localpart from
:func:`fedxmpp.xml.jid.prep_local`, ``domain`` a domain from
:func:`fedxmpp.xml.jid.prep_domain`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from twisted.logger import Logger

from fedxmpp.storage.accounts import SqlAccountStore
from fedxmpp.storage.archive import (
    ArchivedMessage,
    ArchiveEntry,
    ArchivePage,
    ArchivePrefs,
    ArchiveQuery,
    SqlArchiveStore,
    UnknownArchiveId,
    archive_id_timestamp,
    make_archive_id,
)
from fedxmpp.storage.credentials import CredentialSet, HashName, ScramCredentials
from fedxmpp.storage.database import Database, Engine
from fedxmpp.storage.errors import (
    AccountError,
    AccountExists,
    ConstraintViolation,
    NoSuchAccount,
    SchemaError,
    StorageError,
)
from fedxmpp.storage.keyval import SqlKeyValStore
from fedxmpp.storage.muc import SqlMucStore, StoredRoom
from fedxmpp.storage.offline import SqlOfflineStore
from fedxmpp.storage.portable import AccountBundle, Existing, ImportResult, SqlPortableStore
from fedxmpp.storage.pubsub import PubsubItem, PubsubNode, SqlPubsubStore
from fedxmpp.storage.push import PushRegistration, SqlPushStore
from fedxmpp.storage.roster import SUBSCRIPTIONS, RosterItem, SqlRosterStore, Subscription
from fedxmpp.storage.schema import load_migrations
from fedxmpp.storage.sm_pending import PendingStanza, SqlPendingStore
from fedxmpp.storage.sqlite import SqliteEngine

if TYPE_CHECKING:
    from fedxmpp.config import Config

log = Logger()

__all__ = [
    "AccountBundle", "AccountError", "AccountExists", "AccountStore", "ArchiveEntry", "ArchivePage", "ArchivePrefs",
    "ArchiveQuery", "ArchiveStore", "ArchivedMessage", "ConstraintViolation", "Existing", "ImportResult", "KeyValStore",
    "MucStore", "NoSuchAccount", "OfflineStore", "PendingStanza", "PendingStore", "PortableStore", "PubsubItem",
    "PubsubNode", "PubsubStore", "PushRegistration", "PushStore", "RosterItem",
    "RosterStore", "SUBSCRIPTIONS", "SchemaError", "Storage", "StorageError", "StoredRoom", "Subscription",
    "UnknownArchiveId", "archive_id_timestamp", "make_archive_id",
    "open_storage",
]


class AccountStore(Protocol):
    """Accounts and their SCRAM credentials.  Passwords are never stored."""

    #: PBKDF2 iteration count given to new credentials.
    scram_iterations: int

    async def create(self, user: str, domain: str, password: str) -> None:
        """Create an account; :class:`AccountExists` if there is one already,
        :class:`~fedxmpp.storage.credentials.InvalidPassword` for an unusable password."""

    async def create_many(self, accounts: Iterable[tuple[str, str, str]]) -> int:
        """Create ``(user, domain, password)`` accounts in one transaction: all or
        none (:class:`AccountExists` names the first conflict).  Returns the count."""

    async def create_many_prepared(self, accounts: Iterable[tuple[str, str, CredentialSet]]) -> int:
        """As :meth:`create_many`, with credentials already derived (for bulk
        imports that spread PBKDF2 over processes)."""

    async def set_password(self, user: str, domain: str, password: str) -> None:
        """Replace the account's credentials; :class:`NoSuchAccount` if it does not exist."""

    async def delete(self, user: str, domain: str) -> None:
        """Delete the account with its credentials, roster, offline messages,
        key/value documents, message archive and pubsub nodes, in one transaction;
        :class:`NoSuchAccount` if it does not exist."""

    async def exists(self, user: str, domain: str) -> bool:
        ...

    async def list_users(self, domain: str) -> list[str]:
        """The localparts of *domain*'s accounts, sorted."""

    async def scram_credentials(self, user: str, domain: str,
                                hash_name: HashName) -> ScramCredentials | None:
        """The account's credentials for *hash_name*, or None if there is no such account."""

    async def check_password(self, user: str, domain: str, password: str) -> bool:
        """Whether *password* is the account's (for SASL PLAIN).  False for an
        unknown account, after the same amount of work."""


class RosterStore(Protocol):
    """Each user's roster (RFC 6121 §2) with the subscription state of every item.

    *contact* is a prepared bare JID as a string.  Every write returns the
    user's new roster version (RFC 6121 §2.6): a counter that grows with each
    change, 0 for a roster never written.  Writes for an account that does not
    exist raise :class:`NoSuchAccount`.
    """

    async def get_roster(self, user: str, domain: str) -> tuple[int, list[RosterItem]]:
        """The roster's version and all its rows (including rows that only hold a
        pending inbound request), sorted by contact."""

    async def get_item(self, user: str, domain: str, contact: str) -> RosterItem | None:
        ...

    async def set_item(self, user: str, domain: str, item: RosterItem) -> int:
        """Create or replace the row for ``item.jid``; returns the new version."""

    async def remove_item(self, user: str, domain: str, contact: str) -> int:
        """Delete the row for *contact*; returns the new version (unchanged if
        there was no such row)."""


class OfflineStore(Protocol):
    """Messages kept for users with no available resource (XEP-0160)."""

    async def store(self, user: str, domain: str, stanza_xml: str, quota: int) -> bool:
        """Keep *stanza_xml* for the user unless they already have *quota*
        messages waiting; returns whether it was stored."""

    async def read(self, user: str, domain: str, after: int, limit: int) -> list[tuple[int, str]]:
        """At most *limit* of the user's waiting messages with an id above *after*,
        oldest first, as ``(id, stanza_xml)``; nothing is deleted."""

    async def delete(self, user: str, domain: str, ids: Sequence[int]) -> int:
        """Delete the user's messages with these ids (delivered); how many were there."""

    async def count(self, user: str, domain: str) -> int:
        ...


class PendingStore(Protocol):
    """What was sent to hibernating stream-management sessions (XEP-0198), kept
    until the session resumes or its stanzas have gone elsewhere, so that a
    server restarting after a crash finds them."""

    async def add(self, rows: Sequence[PendingStanza]) -> None:
        """Keep *rows* (in one transaction); rows of accounts that no longer exist are skipped."""

    async def remove(self, resume_id: str) -> None:
        """Forget every row of a session."""

    async def all(self) -> list[PendingStanza]:
        """Every row, oldest first."""


class KeyValStore(Protocol):
    """Small per-user documents, in the manner of Prosody's keyval stores.

    *store* names the feature that owns the documents (``"vcard"``, ``"private"``,
    ``"blocklist"``...); *key* names a document within it, ``""`` for a store
    with one document per user.  Values are bytes (serialised XML, JSON...).
    """

    async def get(self, user: str, domain: str, store: str, key: str = "") -> bytes | None:
        ...

    async def set(self, user: str, domain: str, store: str, key: str, value: bytes | None) -> None:
        """Create or replace the document; None deletes it.  :class:`NoSuchAccount`
        when writing for an account that does not exist."""

    async def list_keys(self, user: str, domain: str, store: str) -> list[str]:
        """The keys of the user's documents in *store*, sorted."""


class ArchiveStore(Protocol):
    """Each user's message archive (XEP-0313), in archive order: the time a message
    was archived (microseconds since the epoch), then arrival."""

    async def add(self, entries: Sequence[ArchiveEntry]) -> int:
        """Archive *entries* in one transaction (entries for accounts that do not
        exist are skipped); how many were stored."""

    async def query(self, user: str, domain: str, query: ArchiveQuery) -> ArchivePage:
        """One page of the messages matching *query*; :class:`UnknownArchiveId` when
        an id it names is not in the archive."""

    async def bounds(self, user: str, domain: str) -> tuple[ArchivedMessage, ArchivedMessage] | None:
        """The first and the last message of the archive; None when it is empty."""

    async def purge(self, before: int, limit: int) -> int:
        """Delete at most *limit* messages, of every archive, archived before *before*;
        how many were deleted."""

    async def get_prefs(self, user: str, domain: str) -> ArchivePrefs | None:
        """The user's preferences; None if they never set any."""

    async def set_prefs(self, user: str, domain: str, prefs: ArchivePrefs) -> None:
        """Replace the user's preferences; :class:`NoSuchAccount` if there is no such account."""


class PubsubStore(Protocol):
    """Each user's personal eventing nodes (XEP-0163) and their items.

    Items of a node are kept in the order they were last published.  Writes for
    an account that does not exist raise :class:`NoSuchAccount`.
    """

    async def nodes(self, user: str, domain: str) -> list[PubsubNode]:
        """The user's nodes, sorted by name."""

    async def create_node(self, user: str, domain: str, node: PubsubNode, now: int) -> bool:
        """Create *node*; False if the user already has a node of that name."""

    async def update_node(self, user: str, domain: str, node: PubsubNode) -> bool:
        """Replace the node's configuration and affiliations; False if there is no such node."""

    async def delete_node(self, user: str, domain: str, node: str) -> bool:
        """Delete the node and its items; False if there was no such node."""

    async def publish(self, user: str, domain: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
        """Store *item* as the node's newest (replacing an item of the same id), then
        keep only the newest *max_items*; the ids of the items dropped, oldest first.
        LookupError if there is no such node."""

    async def items(self, user: str, domain: str, node: str, *, item_ids: Sequence[str] | None = None,
                    last: int | None = None) -> list[PubsubItem]:
        """The node's items (those of *item_ids* only, or the newest *last* only), oldest first."""

    async def last_items(self, user: str, domain: str) -> dict[str, PubsubItem]:
        """The newest item of each of the user's nodes that has one, by node."""

    async def retract(self, user: str, domain: str, node: str, item_id: str) -> bool:
        """Delete one item; False if there was no such item."""

    async def purge(self, user: str, domain: str, node: str) -> int:
        """Delete every item of the node; how many."""


class MucStore(Protocol):
    """The persistent rooms of multi-user chat services (XEP-0045), per service domain."""

    async def rooms(self, domain: str) -> list[StoredRoom]:
        """Every stored room of the service *domain*, sorted by name."""

    async def save(self, room: StoredRoom) -> None:
        """Create or replace the room's row."""

    async def delete(self, domain: str, room: str, *, with_archive: bool = True) -> bool:
        """Forget the stored room (a room that stays, but is no longer persistent,
        keeps its archive: *with_archive* false); False if the room was not stored."""

    async def archive(self, domain: str, room: str, entries: Sequence[ArchivedMessage], keep: int) -> None:
        """Add *entries* to the room's archive, then keep only its newest *keep* messages."""

    async def query(self, domain: str, room: str, query: ArchiveQuery) -> ArchivePage:
        """One page of the room's archive (``query.with_jid`` is not used);
        :class:`UnknownArchiveId` when an id it names is not in the archive."""


class PushStore(Protocol):
    """Each account's XEP-0357 push registrations (app server JID and node)."""

    async def enable(self, user: str, domain: str, registration: PushRegistration,
                     keep: int) -> list[PushRegistration]:
        """Add *registration*, or replace the one with the same service and node;
        then keep only the account's *keep* newest.  The registrations now, oldest
        first; :class:`NoSuchAccount` if there is no such account."""

    async def disable(self, user: str, domain: str, service: str, node: str | None) -> int:
        """Remove the registration of *service* and *node* (every node of *service*
        when None); how many were removed."""

    async def registrations(self, user: str, domain: str) -> list[PushRegistration]:
        """The account's registrations, oldest first."""


class PortableStore(Protocol):
    """Whole accounts written and read in bulk (``fedxmpp import`` and ``export``):
    see :mod:`fedxmpp.storage.portable` for what *existing* does to an account
    that exists already."""

    async def import_accounts(self, bundles: Sequence[AccountBundle], existing: Existing) -> list[ImportResult]:
        """Write *bundles*, each account all or nothing; one result per bundle, in order."""

    async def export_accounts(self, domain: str, users: Sequence[str]) -> list[AccountBundle]:
        """Everything kept for each of *users* of *domain* that exists, in one transaction."""


class Storage:
    """Every store of one database."""

    def __init__(self, database: Database, accounts: AccountStore, roster: RosterStore,
                 offline: OfflineStore, keyval: KeyValStore, archive: ArchiveStore,
                 pubsub: PubsubStore, sm_pending: PendingStore | None = None,
                 muc: MucStore | None = None, push: PushStore | None = None) -> None:
        self.database = database
        self.accounts = accounts
        self.roster = roster
        self.offline = offline
        self.keyval = keyval
        self.archive = archive
        self.pubsub = pubsub
        self.sm_pending = sm_pending
        self.muc = muc
        self.push = push
        self.portable: PortableStore = SqlPortableStore(database)

    def close(self) -> None:
        """Close the database; waits for running transactions to finish."""
        self.database.close()


async def open_storage(cfg: Config, reactor: Any) -> Storage:
    """Open the database named by ``cfg.storage.url``, migrate it and build the stores.

    Creates ``cfg.server.data_dir`` and the database's directory (mode 0700) if
    they are missing.

    *reactor* must provide ``callWhenRunning``, ``getThreadPool`` and
    ``callFromThread`` (any Twisted reactor, including the asyncio one).
    Raises :class:`StorageError` if the database cannot be opened or migrated.
    """
    _make_private_dir(cfg.server.data_dir)
    engine = engine_for(cfg)
    engine.prepare_location()
    database = Database(engine, reactor)
    try:
        version = await database.migrate(load_migrations())
    except BaseException:
        database.close()
        raise
    log.info("Storage: {where} (schema version {version})", where=engine.describe(), version=version)
    accounts = SqlAccountStore(database, reactor, iterations=cfg.auth.scram_iterations)
    return Storage(database, accounts, SqlRosterStore(database), SqlOfflineStore(database),
                   SqlKeyValStore(database), SqlArchiveStore(database), SqlPubsubStore(database), SqlPendingStore(database),
                   muc=SqlMucStore(database), push=SqlPushStore(database))


def engine_for(cfg: Config, url: str | None = None) -> Engine:
    """The engine of *url* (default ``cfg.storage.url``); :class:`StorageError` if
    it names none."""
    url = cfg.storage.url if url is None else url
    if url.startswith("sqlite:///") and url != "sqlite:///":
        return SqliteEngine(Path(url[len("sqlite:///"):]))
    if url.startswith(("postgresql://", "postgres://")):
        from fedxmpp.storage.postgres import PostgresEngine

        return PostgresEngine(url, pool_size=cfg.storage.pool_size)
    raise StorageError(f"unsupported storage url {url.split(':', 1)[0]!r}")


def _make_private_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {directory}: {e.strerror}") from None
