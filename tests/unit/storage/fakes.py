"""In-memory stores for unit tests: accounts, roster, offline messages, keyval,
message archives and pubsub nodes.

The account store derives credentials on the calling thread, which is fine in tests and the
reason it is not production code.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from fedxmpp.storage import (
    AccountExists,
    ArchivedMessage,
    ArchiveEntry,
    ArchivePage,
    ArchivePrefs,
    ArchiveQuery,
    NoSuchAccount,
    PubsubItem,
    PubsubNode,
    PushRegistration,
    RosterItem,
    StorageError,
    StoredRoom,
    UnknownArchiveId,
)
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
        #: The stanzas per user, oldest first, and their ids (in step).
        self.messages: dict[tuple[str, str], list[str]] = {}
        self.ids: dict[tuple[str, str], list[int]] = {}
        self._next_id = 1

    async def store(self, user: str, domain: str, stanza_xml: str, quota: int) -> bool:
        _check_account(self.accounts, user, domain)
        queue = self.messages.setdefault((user, domain), [])
        if len(queue) >= quota:
            return False
        queue.append(stanza_xml)
        self.ids.setdefault((user, domain), []).append(self._next_id)
        self._next_id += 1
        return True

    async def read(self, user: str, domain: str, after: int, limit: int) -> list[tuple[int, str]]:
        rows = zip(self.ids.get((user, domain), []), self.messages.get((user, domain), []))
        return [row for row in rows if row[0] > after][:limit]

    async def delete(self, user: str, domain: str, ids: Sequence[int]) -> int:
        key = (user, domain)
        gone = set(ids)
        kept = [(i, m) for i, m in zip(self.ids.get(key, []), self.messages.get(key, [])) if i not in gone]
        deleted = len(self.ids.get(key, [])) - len(kept)
        if kept:
            self.ids[key], self.messages[key] = [i for i, _ in kept], [m for _, m in kept]
        else:
            self.ids.pop(key, None)
            self.messages.pop(key, None)
        return deleted

    async def count(self, user: str, domain: str) -> int:
        return len(self.messages.get((user, domain), []))


class MemoryPendingStore:
    """An in-memory PendingStore (stanzas of hibernating sessions); ``gate``, when
    set, is a Deferred that every write waits for (a slow disk)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.gate: Any = None

    async def add(self, rows: Sequence[Any]) -> None:
        if self.gate is not None:
            await self.gate
        self.rows.extend(rows)

    async def remove(self, resume_id: str) -> None:
        self.rows = [r for r in self.rows if r.resume_id != resume_id]

    async def all(self) -> list[Any]:
        return list(self.rows)


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


class MemoryArchiveStore:
    """An in-memory ArchiveStore with the SQL store's order and paging rules
    (entries for unknown accounts are skipped when *accounts* is given)."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts
        self.entries: list[tuple[int, ArchiveEntry]] = []
        self.prefs: dict[tuple[str, str], ArchivePrefs] = {}
        self.batches: list[int] = []
        #: When set, add() raises this.
        self.broken: StorageError | None = None
        self._seq = 0

    async def add(self, entries: Sequence[ArchiveEntry]) -> int:
        if self.broken is not None:
            raise self.broken
        self.batches.append(len(entries))
        stored = 0
        for e in entries:
            if self.accounts is not None and (e.user, e.domain) not in self.accounts.accounts:
                continue
            self._seq += 1
            self.entries.append((self._seq, e))
            stored += 1
        return stored

    def archive(self, user: str, domain: str) -> list[tuple[int, ArchiveEntry]]:
        return sorted(((seq, e) for seq, e in self.entries if (e.user, e.domain) == (user, domain)),
                      key=lambda se: (se[1].timestamp, se[0]))

    async def query(self, user: str, domain: str, q: ArchiveQuery) -> ArchivePage:
        rows = self.archive(user, domain)
        position = {e.archive_id: i for i, (_, e) in enumerate(rows)}

        def pos(archive_id: str) -> int:
            if archive_id not in position:
                raise UnknownArchiveId(archive_id)
            return position[archive_id]

        for archive_id in q.ids or ():
            pos(archive_id)
        selected = []
        lo = pos(q.after_id) if q.after_id is not None else -1
        hi = pos(q.before_id) if q.before_id is not None else len(rows)
        for i, (_, e) in enumerate(rows):
            if not lo < i < hi:
                continue
            if q.with_jid is not None and (e.with_jid != q.with_jid or (
                    q.with_resource is not None and e.with_resource != q.with_resource)):
                continue
            if (q.start is not None and e.timestamp < q.start) or (q.end is not None and e.timestamp > q.end):
                continue
            if q.ids is not None and e.archive_id not in q.ids:
                continue
            selected.append((i, e))
        count = len(selected)
        if q.after is not None:
            after = pos(q.after)
            page = [(i, e) for i, e in selected if i > after]
        elif q.before:
            before = pos(q.before)
            page = [(i, e) for i, e in selected if i < before]
        else:
            page = selected[q.index or 0:] if q.before is None else selected
        if q.max <= 0:
            return ArchivePage([], count, None, count == 0)
        backward = q.before is not None
        chosen = page[-q.max:] if backward else page[:q.max]
        complete = len(page) <= q.max
        if not chosen:
            return ArchivePage([], count, None, complete)
        first_index = sum(1 for i, _ in selected if i < chosen[0][0])
        return ArchivePage([ArchivedMessage(e.archive_id, e.timestamp, e.stanza) for _, e in chosen], count,
                           first_index, complete)

    async def bounds(self, user: str, domain: str) -> tuple[ArchivedMessage, ArchivedMessage] | None:
        rows = self.archive(user, domain)
        if not rows:
            return None
        first, last = rows[0][1], rows[-1][1]
        return (ArchivedMessage(first.archive_id, first.timestamp, first.stanza),
                ArchivedMessage(last.archive_id, last.timestamp, last.stanza))

    async def purge(self, before: int, limit: int) -> int:
        old = sorted((e.timestamp, seq) for seq, e in self.entries if e.timestamp < before)[:limit]
        gone = {seq for _, seq in old}
        self.entries = [(seq, e) for seq, e in self.entries if seq not in gone]
        return len(gone)

    async def get_prefs(self, user: str, domain: str) -> ArchivePrefs | None:
        return self.prefs.get((user, domain))

    async def set_prefs(self, user: str, domain: str, prefs: ArchivePrefs) -> None:
        _check_account(self.accounts, user, domain)
        self.prefs[(user, domain)] = prefs


class MemoryPubsubStore:
    """An in-memory PubsubStore (with *accounts*: NoSuchAccount for unknown ones)."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts
        self.nodes_by_user: dict[tuple[str, str], dict[str, PubsubNode]] = {}
        # (user, domain, node) -> items, oldest first
        self.items_by_node: dict[tuple[str, str, str], list[PubsubItem]] = {}

    async def nodes(self, user: str, domain: str) -> list[PubsubNode]:
        nodes = self.nodes_by_user.get((user, domain), {})
        return [nodes[k] for k in sorted(nodes)]

    async def create_node(self, user: str, domain: str, node: PubsubNode, now: int) -> bool:
        _check_account(self.accounts, user, domain)
        nodes = self.nodes_by_user.setdefault((user, domain), {})
        if node.node in nodes:
            return False
        nodes[node.node] = node
        self.items_by_node[(user, domain, node.node)] = []
        return True

    async def update_node(self, user: str, domain: str, node: PubsubNode) -> bool:
        nodes = self.nodes_by_user.get((user, domain), {})
        if node.node not in nodes:
            return False
        nodes[node.node] = node
        return True

    async def delete_node(self, user: str, domain: str, node: str) -> bool:
        self.items_by_node.pop((user, domain, node), None)
        return self.nodes_by_user.get((user, domain), {}).pop(node, None) is not None

    async def publish(self, user: str, domain: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
        items = self.items_by_node.get((user, domain, node))
        if items is None:
            raise LookupError(node)
        items[:] = [i for i in items if i.item_id != item.item_id] + [item]
        dropped = items[:-max(max_items, 1)]
        del items[:-max(max_items, 1)]
        return [i.item_id for i in dropped]

    async def items(self, user: str, domain: str, node: str, *, item_ids: Sequence[str] | None = None,
                    last: int | None = None) -> list[PubsubItem]:
        items = list(self.items_by_node.get((user, domain, node), []))
        if item_ids is not None:
            items = [i for i in items if i.item_id in item_ids]
        return items[-last:] if last is not None else items

    async def last_items(self, user: str, domain: str) -> dict[str, PubsubItem]:
        return {node: items[-1] for (u, d, node), items in self.items_by_node.items()
                if (u, d) == (user, domain) and items}

    async def retract(self, user: str, domain: str, node: str, item_id: str) -> bool:
        items = self.items_by_node.get((user, domain, node), [])
        kept = [i for i in items if i.item_id != item_id]
        if len(kept) == len(items):
            return False
        items[:] = kept
        return True

    async def purge(self, user: str, domain: str, node: str) -> int:
        items = self.items_by_node.get((user, domain, node), [])
        n = len(items)
        items.clear()
        return n


class MemoryMucStore:
    """Persistent rooms in a dict keyed by (domain, room)."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], StoredRoom] = {}
        self.archived: dict[tuple[str, str], list[ArchivedMessage]] = {}

    async def rooms(self, domain: str) -> list[StoredRoom]:
        return [r for (d, _), r in sorted(self.stored.items()) if d == domain]

    async def save(self, room: StoredRoom) -> None:
        self.stored[(room.domain, room.room)] = room

    async def delete(self, domain: str, room: str, *, with_archive: bool = True) -> bool:
        if with_archive:
            self.archived.pop((domain, room), None)
        return self.stored.pop((domain, room), None) is not None

    async def archive(self, domain: str, room: str, entries: Sequence[ArchivedMessage], keep: int) -> None:
        messages = self.archived.setdefault((domain, room), [])
        messages.extend(entries)
        del messages[:max(0, len(messages) - keep)]

    async def query(self, domain: str, room: str, query: ArchiveQuery) -> ArchivePage:
        """Filters start/end and pages with after/before/max only (what the unit tests use)."""
        messages = [m for m in self.archived.get((domain, room), [])
                    if (query.start is None or m.timestamp >= query.start)
                    and (query.end is None or m.timestamp <= query.end)]
        ids = [m.archive_id for m in messages]
        for named in (query.after, query.before):
            if named and named not in ids:
                raise UnknownArchiveId(named)
        if query.after:
            start = ids.index(query.after) + 1
            page = messages[start:start + query.max]
        elif query.before is not None:
            end = ids.index(query.before) if query.before else len(messages)
            start = max(0, end - query.max)
            page = messages[start:end]
        else:
            start = 0
            page = messages[:query.max]
        complete = (start == 0) if query.before is not None else (start + len(page) >= len(messages))
        return ArchivePage(page, len(messages), start if page else None, complete)


class MemoryPushStore:
    """An in-memory PushStore (with *accounts*: NoSuchAccount for unknown ones)."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts
        self.rows: dict[tuple[str, str], list[PushRegistration]] = {}

    async def enable(self, user: str, domain: str, registration: PushRegistration,
                     keep: int) -> list[PushRegistration]:
        _check_account(self.accounts, user, domain)
        rows = [r for r in self.rows.get((user, domain), []) if r.key != registration.key]
        rows.append(registration)
        self.rows[(user, domain)] = rows[-keep:]
        return list(self.rows[(user, domain)])

    async def disable(self, user: str, domain: str, service: str, node: str | None) -> int:
        rows = self.rows.get((user, domain), [])
        kept = [r for r in rows if r.service != service or (node is not None and r.node != node)]
        self.rows[(user, domain)] = kept
        return len(rows) - len(kept)

    async def registrations(self, user: str, domain: str) -> list[PushRegistration]:
        return list(self.rows.get((user, domain), []))


class MemoryStorage:
    """A Storage of in-memory stores, for unit tests of code above storage.  Writes
    for users without an account raise NoSuchAccount, as with SQL; tests create
    accounts with ``storage.accounts.put(user, domain, {})``."""

    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self.accounts = accounts or MemoryAccountStore()
        self.roster = MemoryRosterStore(self.accounts)
        self.offline = MemoryOfflineStore(self.accounts)
        self.keyval = MemoryKeyValStore(self.accounts)
        self.archive = MemoryArchiveStore(self.accounts)
        self.pubsub = MemoryPubsubStore(self.accounts)
        self.sm_pending = MemoryPendingStore()
        self.muc = MemoryMucStore()
        self.push = MemoryPushStore(self.accounts)

    def close(self) -> None:
        pass
