"""The SQL account store."""

from __future__ import annotations

import inspect
import sqlite3
import threading

import pytest
import pytest_twisted

import fedxmpp.storage.accounts as accounts_module
from fedxmpp.storage import AccountExists, AccountStore, NoSuchAccount
from fedxmpp.storage.credentials import InvalidPassword, derive_all, verify_password

from tests.unit.conftest import TEST_ITERATIONS
from tests.unit.storage.conftest import sqlite_only


def test_sql_store_satisfies_the_protocol():
    """SqlAccountStore has every method of the AccountStore protocol, each async."""
    methods = [n for n, v in vars(AccountStore).items() if not n.startswith("_") and callable(v)]
    assert len(methods) == 9
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(accounts_module.SqlAccountStore, name)), name


@pytest_twisted.ensureDeferred
async def test_create_exists_and_list(storage):
    """Created accounts exist and are listed sorted, per domain only."""
    a = storage.accounts
    await a.create("zoe", "example.test", "pw1")
    await a.create("alice", "example.test", "pw2")
    await a.create("alice", "other.test", "pw3")
    assert await a.exists("alice", "example.test")
    assert not await a.exists("bob", "example.test")
    assert await a.list_users("example.test") == ["alice", "zoe"]
    assert await a.list_users("other.test") == ["alice"]
    assert await a.list_users("nowhere.test") == []


@pytest_twisted.ensureDeferred
async def test_create_twice_raises_account_exists(storage):
    """A second create of the same account raises AccountExists and keeps the first password."""
    await storage.accounts.create("alice", "example.test", "first")
    with pytest.raises(AccountExists):
        await storage.accounts.create("alice", "example.test", "second")
    assert await storage.accounts.check_password("alice", "example.test", "first")


@pytest_twisted.ensureDeferred
async def test_credentials_per_hash(storage):
    """Each account has SHA-1 and SHA-256 credentials with the configured
    iterations, separate salts, that verify the password."""
    await storage.accounts.create("alice", "example.test", "pencil")
    sha1 = await storage.accounts.scram_credentials("alice", "example.test", "sha-1")
    sha256 = await storage.accounts.scram_credentials("alice", "example.test", "sha-256")
    assert sha1 is not None and sha256 is not None
    assert sha1.iterations == sha256.iterations == TEST_ITERATIONS
    assert sha1.salt != sha256.salt
    assert verify_password(sha1, "pencil") and verify_password(sha256, "pencil")
    assert await storage.accounts.scram_credentials("bob", "example.test", "sha-256") is None


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_password_is_never_stored(storage, storage_cfg):
    """Neither the password nor any column other than salt/iterations/keys is
    written: the database file does not contain the password."""
    password = "Unmistakable-Passw0rd-Marker"
    await storage.accounts.create("alice", "example.test", password)
    storage.close()
    conn = sqlite3.connect(storage_cfg.sqlite_path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(scram_credentials)")]
    conn.close()
    assert columns == ["domain", "username", "hash_name", "salt", "iterations",
                       "stored_key", "server_key"]
    raw = b"".join(p.read_bytes() for p in storage_cfg.sqlite_path.parent.iterdir())
    assert password.encode() not in raw


@pytest_twisted.ensureDeferred
async def test_check_password(storage):
    """check_password is True only for the right password of an existing account."""
    await storage.accounts.create("alice", "example.test", "right")
    assert await storage.accounts.check_password("alice", "example.test", "right")
    assert not await storage.accounts.check_password("alice", "example.test", "wrong")
    assert not await storage.accounts.check_password("alice", "other.test", "right")
    assert not await storage.accounts.check_password("nobody", "example.test", "right")
    assert not await storage.accounts.check_password("alice", "example.test", "bad\x00")


@pytest_twisted.ensureDeferred
async def test_set_password(storage):
    """set_password replaces the credentials: the old password stops working."""
    await storage.accounts.create("alice", "example.test", "old")
    before = await storage.accounts.scram_credentials("alice", "example.test", "sha-256")
    await storage.accounts.set_password("alice", "example.test", "new")
    assert await storage.accounts.check_password("alice", "example.test", "new")
    assert not await storage.accounts.check_password("alice", "example.test", "old")
    after = await storage.accounts.scram_credentials("alice", "example.test", "sha-256")
    assert after is not None and before is not None and after.salt != before.salt
    with pytest.raises(NoSuchAccount):
        await storage.accounts.set_password("bob", "example.test", "x")


@pytest_twisted.ensureDeferred
async def test_delete_removes_account_and_credentials(storage):
    """delete removes the account and (by cascade) its credential rows;
    deleting again raises NoSuchAccount."""
    await storage.accounts.create("alice", "example.test", "pw")
    await storage.accounts.delete("alice", "example.test")
    assert not await storage.accounts.exists("alice", "example.test")
    assert await storage.accounts.scram_credentials("alice", "example.test", "sha-1") is None
    assert await storage.database.run_interaction("count", _count_txn, "scram_credentials") == 0
    with pytest.raises(NoSuchAccount):
        await storage.accounts.delete("alice", "example.test")


@pytest_twisted.ensureDeferred
async def test_invalid_password_is_refused(storage):
    """An empty password raises InvalidPassword and creates nothing."""
    with pytest.raises(InvalidPassword):
        await storage.accounts.create("alice", "example.test", "")
    assert not await storage.accounts.exists("alice", "example.test")


@pytest_twisted.ensureDeferred
async def test_create_many(storage):
    """create_many creates every account of the batch and returns the count."""
    batch = [(f"user{i}", "example.test", f"pw{i}") for i in range(150)]
    assert await storage.accounts.create_many(batch) == 150
    assert len(await storage.accounts.list_users("example.test")) == 150
    assert await storage.accounts.check_password("user149", "example.test", "pw149")


@pytest_twisted.ensureDeferred
async def test_create_many_is_all_or_nothing(storage):
    """One existing account in the batch raises AccountExists and none of the
    batch is created."""
    await storage.accounts.create("taken", "example.test", "pw")
    batch = [("new1", "example.test", "a"), ("taken", "example.test", "b"), ("new2", "example.test", "c")]
    with pytest.raises(AccountExists) as info:
        await storage.accounts.create_many(batch)
    assert info.value.user == "taken"
    assert await storage.accounts.list_users("example.test") == ["taken"]


@pytest_twisted.ensureDeferred
async def test_create_many_prepared(storage):
    """Accounts with credentials derived elsewhere (a process pool) are stored as given."""
    creds = derive_all("pencil", TEST_ITERATIONS)
    assert await storage.accounts.create_many_prepared([("alice", "example.test", creds)]) == 1
    stored = await storage.accounts.scram_credentials("alice", "example.test", "sha-256")
    assert stored == creds["sha-256"]


@pytest_twisted.ensureDeferred
async def test_pbkdf2_never_runs_on_the_reactor_thread(storage, monkeypatch):
    """Every derivation and password check of the store runs off the reactor thread."""
    threads: list[threading.Thread] = []

    def recording(f):
        def wrapper(*args, **kwargs):
            threads.append(threading.current_thread())
            return f(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(accounts_module, "derive_all", recording(derive_all))
    monkeypatch.setattr(accounts_module, "verify_password", recording(verify_password))
    a = storage.accounts
    await a.create("alice", "example.test", "pw")
    await a.set_password("alice", "example.test", "pw2")
    await a.create_many([("bob", "example.test", "pw")])
    await a.check_password("alice", "example.test", "pw2")
    await a.check_password("nobody", "example.test", "pw")
    assert len(threads) == 5
    assert threading.main_thread() not in threads


def _count_txn(txn, table: str) -> int:
    txn.execute(f"SELECT COUNT(*) FROM {table}")
    return txn.fetchone()[0]
