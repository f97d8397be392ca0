"""The engines, transactions and schema migrations (each test on each engine
unless it is about SQLite itself)."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import reactor

from fedxmpp.storage import StorageError, engine_for, open_storage
from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, SchemaError
from fedxmpp.storage.schema import Migration, load_migrations

from tests.unit.storage.conftest import sqlite_only


def _pragma_txn(txn: Transaction, name: str) -> object:
    txn.execute(f"PRAGMA {name}")
    row = txn.fetchone()
    return row[0] if row else None


def _all_txn(txn: Transaction, sql: str) -> list[tuple]:
    txn.execute(sql)
    return txn.fetchall()


def test_migrations_are_numbered_from_one():
    """The shipped migrations load in order 1..N, the first creating accounts."""
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "accounts"
    assert any("CREATE TABLE accounts" in s for s in migrations[0].statements)


def test_migration_numbering_gap_is_refused(tmp_path, monkeypatch):
    """A package whose migrations skip a number does not load."""
    pkg = tmp_path / "gappy_schema"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "v0001_one.py").write_text("STATEMENTS = ('CREATE TABLE one (x INTEGER)',)\n")
    (pkg / "v0003_three.py").write_text("STATEMENTS = ('CREATE TABLE three (x INTEGER)',)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="without gaps"):
        load_migrations("gappy_schema")


def test_engine_specific_statements_replace_the_default():
    """A migration may give another engine its own SQL; others get STATEMENTS."""
    m = Migration(1, "x", ("CREATE TABLE t (b BLOB)",), {"postgres": ("CREATE TABLE t (b BYTEA)",)})
    assert m.statements_for("postgres") == ("CREATE TABLE t (b BYTEA)",)
    assert m.statements_for("sqlite") == ("CREATE TABLE t (b BLOB)",)


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_open_creates_private_files_and_uses_wal(storage_cfg):
    """open_storage creates the data directory 0700 and the database 0600, in WAL
    mode with a busy timeout and foreign keys on."""
    storage = await open_storage(storage_cfg, reactor)
    try:
        db = storage.database
        assert await db.run_interaction("t", _pragma_txn, "journal_mode") == "wal"
        assert await db.run_interaction("t", _pragma_txn, "busy_timeout") >= 1000
        assert await db.run_interaction("t", _pragma_txn, "foreign_keys") == 1
    finally:
        storage.close()
    path = storage_cfg.sqlite_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(storage_cfg.server.data_dir.stat().st_mode) == 0o700


@pytest_twisted.ensureDeferred
async def test_migrations_apply_once(storage_cfg):
    """Reopening an up-to-date database applies nothing again: one
    schema_version row per migration."""
    for _ in range(2):
        storage = await open_storage(storage_cfg, reactor)
        storage.close()
    storage = await open_storage(storage_cfg, reactor)
    try:
        rows = await storage.database.run_interaction("t", _all_txn, "SELECT version FROM schema_version ORDER BY version")
    finally:
        storage.close()
    assert [r[0] for r in rows] == [m.version for m in load_migrations()]


@pytest_twisted.ensureDeferred
async def test_newer_schema_is_refused(storage_cfg):
    """A database migrated by a newer fedxmpp raises SchemaError instead of being used."""
    storage = await open_storage(storage_cfg, reactor)
    await storage.database.run_interaction(
        "t", lambda txn: txn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)"))
    storage.close()
    with pytest.raises(SchemaError, match="999"):
        await open_storage(storage_cfg, reactor)


@pytest_twisted.ensureDeferred
async def test_a_later_migration_applies_on_open(storage_cfg):
    """A database at version 1 gets version 2 applied when it appears: how a new
    store adds its tables."""
    storage_cfg.server.data_dir.mkdir()
    engine = engine_for(storage_cfg)
    engine.prepare_location()
    first = [Migration(1, "one", ("CREATE TABLE one (x INTEGER)",))]
    db = Database(engine, reactor)
    assert await db.migrate(first) == 1
    db.close()
    db = Database(engine, reactor)
    try:
        assert await db.migrate(first + [Migration(2, "two", ("CREATE TABLE two (y TEXT)",))]) == 2
        await db.run_interaction("t", lambda txn: txn.execute("INSERT INTO two VALUES ('ok')"))
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_failed_interaction_rolls_back(storage):
    """An exception inside a *_txn function undoes all of its writes."""
    def txn_then_fail(txn: Transaction) -> None:
        txn.execute("INSERT INTO accounts (domain, username, created_ts) VALUES ('d', 'u', 0)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await storage.database.run_interaction("t", txn_then_fail)
    assert not await storage.accounts.exists("u", "d")


@pytest_twisted.ensureDeferred
async def test_driver_errors_become_storage_errors(storage):
    """A driver error surfaces as StorageError; a constraint as ConstraintViolation."""
    with pytest.raises(StorageError):
        await storage.database.run_interaction("t", lambda txn: txn.execute("SELECT * FROM nowhere"))

    def twice(txn: Transaction) -> None:
        for _ in range(2):
            txn.execute("INSERT INTO accounts (domain, username, created_ts) VALUES ('d', 'u', 0)")

    with pytest.raises(ConstraintViolation):
        await storage.database.run_interaction("t", twice)


@pytest_twisted.ensureDeferred
async def test_closed_database_refuses_work(storage):
    """After close(), interactions fail with StorageError rather than hanging."""
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        await storage.accounts.exists("u", "d")


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_unsupported_url_is_a_storage_error(storage_cfg):
    """Only sqlite:/// and postgresql:// URLs are supported."""
    cfg = dataclasses.replace(storage_cfg, storage=dataclasses.replace(storage_cfg.storage,
                                                                       url="mysql://x/y"))
    with pytest.raises(StorageError, match="unsupported"):
        await open_storage(cfg, reactor)


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_uncreatable_directory_is_a_storage_error(storage_cfg, tmp_path):
    """A database directory that cannot be created gives StorageError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = dataclasses.replace(storage_cfg, storage=dataclasses.replace(
        storage_cfg.storage, url=f"sqlite:///{blocker}/sub/db.sqlite3"))
    with pytest.raises(StorageError, match="cannot create"):
        await open_storage(cfg, reactor)


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_writer_in_another_connection_is_waited_for(storage, storage_cfg):
    """While another process (the admin command) holds the write lock, a write
    waits for it under the busy timeout instead of failing."""
    other = sqlite3.connect(storage_cfg.sqlite_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO accounts (domain, username, created_ts) VALUES ('example.test', 'cli', 0)")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.3)
        other.execute("COMMIT")
        other.close()
        released.set()

    threading.Thread(target=release_later).start()
    await storage.accounts.create("server", "example.test", "pw")
    assert released.is_set()
    assert await storage.accounts.list_users("example.test") == ["cli", "server"]


def _insert_skipping_violations_txn(txn: Transaction, users: list[str]) -> int:
    stored = 0
    for user in users:
        try:
            txn.execute("INSERT INTO accounts (domain, username, created_ts) VALUES ('d', ?, 0)", (user,))
        except ConstraintViolation:
            continue
        stored += 1
    txn.execute("SELECT COUNT(*) FROM accounts")
    assert txn.fetchone() == (stored,)
    return stored


@pytest_twisted.ensureDeferred
async def test_a_caught_violation_undoes_only_its_statement(storage):
    """A *_txn function that catches a ConstraintViolation and goes on keeps the
    transaction's other writes (on PostgreSQL, where the failed statement aborts
    the transaction, by running it again with a savepoint per statement)."""
    stored = await storage.database.run_interaction(
        "t", _insert_skipping_violations_txn, ["a", "b", "a", "c", "b"])
    assert stored == 3
    rows = await storage.database.run_interaction("t", _all_txn, "SELECT username FROM accounts ORDER BY username")
    assert rows == [("a",), ("b",), ("c",)]


@pytest_twisted.ensureDeferred
async def test_concurrent_read_then_write_transactions_act_one_after_another(storage):
    """Many roster writes for one user at once (read the version, write version + 1)
    give every version once, as if they ran one at a time: on PostgreSQL several
    connections run them together, and SERIALIZABLE with retries keeps the result."""
    from twisted.internet.defer import gatherResults

    from fedxmpp.storage import RosterItem

    await storage.accounts.create("alice", "example.test", "pw")
    writes = [storage.roster.set_item("alice", "example.test",
                                      RosterItem(f"c{i}@example.test", None, "none", False, False, ()))
              for i in range(24)]
    versions = await gatherResults([_deferred(w) for w in writes])
    assert sorted(versions) == list(range(1, 25))
    version, items = await storage.roster.get_roster("alice", "example.test")
    assert version == 24 and len(items) == 24


def _deferred(coroutine):
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coroutine)
