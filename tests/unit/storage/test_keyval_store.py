"""The SQL key/value store, and account deletion taking every store's rows with it."""

from __future__ import annotations

import inspect

import pytest
import pytest_twisted

from fedxmpp.config import Config
from fedxmpp.storage import KeyValStore, NoSuchAccount, RosterItem, open_storage
from fedxmpp.storage.keyval import SqlKeyValStore

D = "example.test"


def test_sql_store_satisfies_the_protocol():
    """SqlKeyValStore has every method of the KeyValStore protocol, each async."""
    methods = [n for n, v in vars(KeyValStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["get", "list_keys", "set"]
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(SqlKeyValStore, name)), name


@pytest_twisted.ensureDeferred
async def test_set_get_replace_delete(storage):
    """A value can be read back, replaced and deleted (set None); missing is None."""
    kv = storage.keyval
    await storage.accounts.create("alice", D, "pw")
    assert await kv.get("alice", D, "vcard") is None
    await kv.set("alice", D, "vcard", "", b"<vCard xmlns='vcard-temp'/>")
    assert await kv.get("alice", D, "vcard") == b"<vCard xmlns='vcard-temp'/>"
    await kv.set("alice", D, "vcard", "", b"\x00binary\xff")
    assert await kv.get("alice", D, "vcard", "") == b"\x00binary\xff"
    await kv.set("alice", D, "vcard", "", None)
    assert await kv.get("alice", D, "vcard") is None
    await kv.set("alice", D, "vcard", "", None)  # deleting nothing is fine


@pytest_twisted.ensureDeferred
async def test_keys_are_per_store_and_user(storage):
    """list_keys lists one store of one user, sorted; stores and users do not mix."""
    kv = storage.keyval
    await storage.accounts.create("alice", D, "pw")
    await storage.accounts.create("bob", D, "pw")
    await kv.set("alice", D, "private", "storage:bookmarks", b"<b/>")
    await kv.set("alice", D, "private", "jabber:x:a", b"<a/>")
    await kv.set("alice", D, "vcard", "", b"<v/>")
    await kv.set("bob", D, "private", "jabber:x:b", b"<x/>")
    assert await kv.list_keys("alice", D, "private") == ["jabber:x:a", "storage:bookmarks"]
    assert await kv.list_keys("bob", D, "private") == ["jabber:x:b"]
    assert await kv.list_keys("alice", D, "blocklist") == []
    assert await kv.get("bob", D, "private", "jabber:x:a") is None


@pytest_twisted.ensureDeferred
async def test_values_must_be_bytes(storage):
    """A str value is refused rather than silently encoded."""
    await storage.accounts.create("alice", D, "pw")
    with pytest.raises(TypeError):
        await storage.keyval.set("alice", D, "vcard", "", "text")


@pytest_twisted.ensureDeferred
async def test_set_for_missing_account_raises(storage):
    """No documents can be kept for an account that does not exist."""
    with pytest.raises(NoSuchAccount):
        await storage.keyval.set("ghost", D, "vcard", "", b"<v/>")


@pytest_twisted.ensureDeferred
async def test_delete_account_takes_everything_with_it(storage):
    """Deleting an account deletes its roster, version, offline messages and
    documents; a new account of the same name starts empty."""
    await storage.accounts.create("alice", D, "pw")
    await storage.accounts.create("bob", D, "pw")
    await storage.roster.set_item("alice", D, RosterItem("bob@example.test", None, "both", False, False, ()))
    await storage.roster.set_item("bob", D, RosterItem("alice@example.test", None, "both", False, False, ()))
    await storage.offline.store("alice", D, "<m/>", 10)
    await storage.keyval.set("alice", D, "vcard", "", b"<v/>")
    await storage.accounts.delete("alice", D)
    await storage.accounts.create("alice", D, "pw")
    assert await storage.roster.get_roster("alice", D) == (0, [])
    assert await storage.offline.count("alice", D) == 0
    assert await storage.keyval.get("alice", D, "vcard") is None
    # The contact's own roster is theirs: it keeps its item.
    assert (await storage.roster.get_item("bob", D, "alice@example.test")) is not None


@pytest_twisted.ensureDeferred
async def test_data_survives_reopening(storage_cfg: Config):
    """Roster, offline messages and documents are on disk: a new Storage on the
    same file sees them."""
    from twisted.internet import reactor

    first = await open_storage(storage_cfg, reactor)
    try:
        await first.accounts.create("alice", D, "pw")
        await first.roster.set_item("alice", D, RosterItem("bob@example.test", "Bob", "to", False, True, ("g",)))
        await first.offline.store("alice", D, "<m/>", 10)
        await first.keyval.set("alice", D, "vcard", "", b"<v/>")
    finally:
        first.close()
    second = await open_storage(storage_cfg, reactor)
    try:
        version, items = await second.roster.get_roster("alice", D)
        assert version == 1 and items[0].name == "Bob" and items[0].pending_in
        assert [t for _, t in await second.offline.read("alice", D, 0, 10)] == ["<m/>"]
        assert await second.keyval.get("alice", D, "vcard") == b"<v/>"
    finally:
        second.close()
