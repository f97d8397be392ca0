"""Copying a whole storage to another database (``fedxmpp migrate-storage``), both
ways between SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from fedxmpp.config import Config
from fedxmpp.storage import (
    ArchiveEntry, ArchivePrefs, ArchiveQuery, ArchivedMessage, PendingStanza, PubsubItem, PubsubNode, PushRegistration,
    RosterItem, Storage, StorageError, StoredRoom, engine_for, make_archive_id, open_storage,
)
from fedxmpp.storage.copy import TargetNotEmpty, copy_storage, tables_of
from fedxmpp.storage.database import Transaction
from fedxmpp.storage.schema import load_migrations

pytestmark = pytest.mark.interop

D = "example.test"
T0 = 1_700_000_000_000_000


@pytest.fixture
def target_url(storage_engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of the other engine."""
    if storage_engine == "sqlite":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'target' / 'copy.sqlite3'}"


def _target_cfg(cfg: Config, url: str) -> Config:
    return dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, url=url))


def _tables_txn(txn: Transaction) -> dict[str, int]:
    txn.execute(txn.engine.table_names_sql())
    names = sorted(str(row[0]) for row in txn.fetchall())
    counts = {}
    for name in names:
        txn.execute(f"SELECT COUNT(*) FROM {name}")
        counts[name] = txn.fetchone()[0]
    return counts


async def _fill(storage: Storage) -> None:
    """A row in every table of every migration, through the stores."""
    await storage.accounts.create("alice", D, "pencil")
    await storage.accounts.create("bob", D, "secret")
    await storage.roster.set_item("alice", D, RosterItem(f"bob@{D}", "Bob", "both", False, False, ("Friends",)))
    for n in range(3):
        await storage.offline.store("bob", D, f"<message id='o{n}'/>", 100)
    await storage.keyval.set("alice", D, "vcard", "", b"\x00<vCard/>\xff")
    await storage.archive.add([
        ArchiveEntry("alice", D, make_archive_id(T0 + n, n.to_bytes(6, "big")), T0 + n, f"bob@{D}", "",
                     n % 2 == 0, f"<message id='a{n}'/>") for n in range(5)])
    await storage.archive.set_prefs("alice", D, ArchivePrefs("roster", frozenset({f"bob@{D}"})))
    await storage.pubsub.create_node("alice", D, PubsubNode("urn:xmpp:avatar:data", {"pubsub#max_items": "1"}), 1)
    await storage.pubsub.publish("alice", D, "urn:xmpp:avatar:data", PubsubItem("i1", f"alice@{D}/x", "<data/>", 5), 10)
    await storage.sm_pending.add([PendingStanza("r1", "bob", D, "phone", "<message id='p1'/>")])
    await storage.muc.save(StoredRoom("conference.example.test", "lobby", "{}", "{}", "{}"))
    await storage.muc.archive("conference.example.test", "lobby",
                              [ArchivedMessage(make_archive_id(T0, b"\x00" * 6), T0, "<message id='g1'/>")], keep=10)
    await storage.push.enable("bob", D, PushRegistration("push.example.net", "n1", {"secret": ["s"]}, T0), keep=5)


@pytest_twisted.ensureDeferred
async def test_everything_is_copied_to_the_other_engine(storage: Storage, storage_cfg: Config, target_url: str):
    """Every table of every migration arrives whole in a database of the other engine:
    accounts log in with the same password, rosters, offline messages (ids and order),
    documents byte for byte, the archive (ids and order), pubsub, hibernating
    sessions' stanzas and rooms; new rows there get ids after the copied ones."""
    await _fill(storage)
    source_tables = await storage.database.run_interaction("t", _tables_txn)
    tables = tables_of(load_migrations(), storage.database.engine.name)
    assert sorted(tables) == sorted(set(source_tables) - {"schema_version"})
    assert all(source_tables[t] > 0 for t in tables), source_tables
    storage.close()

    printed: list[tuple[str, int]] = []
    counts = await copy_storage(storage_cfg, target_url, reactor, progress=lambda t, n: printed.append((t, n)))
    assert counts == {t: source_tables[t] for t in tables}
    assert printed == list(counts.items())

    copy = await open_storage(_target_cfg(storage_cfg, target_url), reactor)
    try:
        assert copy.database.engine.name != storage.database.engine.name
        target_tables = await copy.database.run_interaction("t", _tables_txn)
        assert target_tables == source_tables
        assert await copy.accounts.check_password("alice", D, "pencil")
        assert await copy.accounts.check_password("bob", D, "secret")
        version, items = await copy.roster.get_roster("alice", D)
        assert version == 1 and items[0].groups == ("Friends",) and items[0].subscription == "both"
        offline = await copy.offline.read("bob", D, 0, 10)
        assert [s for _, s in offline] == [f"<message id='o{n}'/>" for n in range(3)]
        assert await copy.offline.store("bob", D, "<message id='new'/>", 100)
        after = await copy.offline.read("bob", D, offline[-1][0], 10)
        assert [s for _, s in after] == ["<message id='new'/>"]
        assert await copy.keyval.get("alice", D, "vcard") == b"\x00<vCard/>\xff"
        page = await copy.archive.query("alice", D, ArchiveQuery(max=10))
        assert [m.stanza for m in page.messages] == [f"<message id='a{n}'/>" for n in range(5)]
        assert page.messages[2].archive_id == make_archive_id(T0 + 2, (2).to_bytes(6, "big"))
        assert (await copy.archive.get_prefs("alice", D)).always == frozenset({f"bob@{D}"})
        assert [i.item_id for i in await copy.pubsub.items("alice", D, "urn:xmpp:avatar:data")] == ["i1"]
        assert [r.stanza for r in await copy.sm_pending.all()] == ["<message id='p1'/>"]
        assert [r.room for r in await copy.muc.rooms("conference.example.test")] == ["lobby"]
        [registration] = await copy.push.registrations("bob", D)
        assert (registration.service, registration.node, registration.options) == \
            ("push.example.net", "n1", {"secret": ["s"]})
    finally:
        copy.close()


@pytest_twisted.ensureDeferred
async def test_a_target_with_data_is_refused_unless_overwritten(storage: Storage, storage_cfg: Config,
                                                                target_url: str):
    """A second copy to the same target is refused, naming what it holds, and changes
    nothing; with overwrite it replaces the target's rows by the source's."""
    await _fill(storage)
    storage.close()
    first = await copy_storage(storage_cfg, target_url, reactor)
    target = await open_storage(_target_cfg(storage_cfg, target_url), reactor)
    try:
        await target.accounts.create("carol", D, "pw")
        before = await target.database.run_interaction("t", _tables_txn)
    finally:
        target.close()

    with pytest.raises(TargetNotEmpty, match=r"accounts \(3 rows\)"):
        await copy_storage(storage_cfg, target_url, reactor)
    target = await open_storage(_target_cfg(storage_cfg, target_url), reactor)
    try:
        assert await target.database.run_interaction("t", _tables_txn) == before
    finally:
        target.close()

    assert await copy_storage(storage_cfg, target_url, reactor, overwrite=True) == first
    target = await open_storage(_target_cfg(storage_cfg, target_url), reactor)
    try:
        assert await target.accounts.list_users(D) == ["alice", "bob"]
    finally:
        target.close()


@pytest_twisted.ensureDeferred
async def test_copy_to_itself_is_refused(storage: Storage, storage_cfg: Config):
    storage.close()
    with pytest.raises(StorageError, match="itself"):
        await copy_storage(storage_cfg, storage_cfg.storage.url, reactor)
    assert engine_for(storage_cfg).describe()


@pytest_twisted.ensureDeferred
async def test_a_table_no_migration_knows_is_not_silently_left_behind(storage: Storage, storage_cfg: Config,
                                                                      target_url: str):
    """The copy refuses a source with a table of its own (made by hand, or by a
    migration the copy does not read), rather than leave it out."""
    await storage.database.run_interaction("t", lambda txn: txn.execute("CREATE TABLE extra_notes (x TEXT)"))
    storage.close()
    with pytest.raises(StorageError, match="extra_notes"):
        await copy_storage(storage_cfg, target_url, reactor)
