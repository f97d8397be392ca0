"""The SQL offline message store."""

from __future__ import annotations

import inspect

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from fedxmpp.storage import NoSuchAccount, OfflineStore
from fedxmpp.storage.offline import SqlOfflineStore

D = "example.test"


def test_sql_store_satisfies_the_protocol():
    """SqlOfflineStore has every method of the OfflineStore protocol, each async."""
    methods = [n for n, v in vars(OfflineStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["count", "delete", "read", "store"]
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(SqlOfflineStore, name)), name


@pytest_twisted.ensureDeferred
async def test_read_pages_oldest_first_and_deletes_nothing(storage):
    """read() returns messages in the order stored, a page at a time after the
    last id seen, and leaves them stored; delete() removes exactly the ids given."""
    await storage.accounts.create("alice", D, "pw")
    for n in range(5):
        assert await storage.offline.store("alice", D, f"<message id='{n}'/>", 10)
    first = await storage.offline.read("alice", D, 0, 2)
    second = await storage.offline.read("alice", D, first[-1][0], 2)
    third = await storage.offline.read("alice", D, second[-1][0], 2)
    assert [t for _, t in first + second + third] == [f"<message id='{n}'/>" for n in range(5)]
    assert await storage.offline.count("alice", D) == 5
    assert await storage.offline.delete("alice", D, [first[1][0], third[0][0]]) == 2
    assert [t for _, t in await storage.offline.read("alice", D, 0, 10)] == [
        "<message id='0'/>", "<message id='2'/>", "<message id='3'/>"]
    assert await storage.offline.delete("alice", D, []) == 0


@pytest_twisted.ensureDeferred
async def test_delete_handles_more_ids_than_one_statement_takes(storage):
    """Deleting 1,200 ids at once (more than SQLite's parameter limit) works."""
    await storage.accounts.create("alice", D, "pw")
    for n in range(1200):
        await storage.offline.store("alice", D, f"<m n='{n}'/>", 2000)
    rows = await storage.offline.read("alice", D, 0, 2000)
    assert await storage.offline.delete("alice", D, [i for i, _ in rows]) == 1200
    assert await storage.offline.count("alice", D) == 0


@pytest_twisted.ensureDeferred
async def test_quota_refuses_when_full(storage):
    """With the quota reached store() returns False and keeps nothing more; after
    the delivered ones are deleted there is room again."""
    await storage.accounts.create("alice", D, "pw")
    assert await storage.offline.store("alice", D, "<a/>", 2)
    assert await storage.offline.store("alice", D, "<b/>", 2)
    assert not await storage.offline.store("alice", D, "<c/>", 2)
    assert await storage.offline.count("alice", D) == 2
    rows = await storage.offline.read("alice", D, 0, 10)
    assert [text for _, text in rows] == ["<a/>", "<b/>"]
    assert await storage.offline.delete("alice", D, [i for i, _ in rows]) == 2
    assert await storage.offline.store("alice", D, "<c/>", 2)


@pytest_twisted.ensureDeferred
async def test_concurrent_stores_respect_the_quota(storage):
    """Stores racing each other never exceed the quota: the check and the insert
    are one transaction."""
    await storage.accounts.create("alice", D, "pw")
    results = await gatherResults([Deferred.fromCoroutine(storage.offline.store("alice", D, f"<m n='{n}'/>", 5))
                                   for n in range(12)])
    assert results.count(True) == 5
    assert await storage.offline.count("alice", D) == 5


@pytest_twisted.ensureDeferred
async def test_messages_are_per_user(storage):
    """read and delete see only the named user's messages."""
    await storage.accounts.create("alice", D, "pw")
    await storage.accounts.create("bob", D, "pw")
    await storage.offline.store("alice", D, "<for-alice/>", 10)
    await storage.offline.store("bob", D, "<for-bob/>", 10)
    [(alice_id, alice_text)] = await storage.offline.read("alice", D, 0, 10)
    [(bob_id, bob_text)] = await storage.offline.read("bob", D, 0, 10)
    assert (alice_text, bob_text) == ("<for-alice/>", "<for-bob/>")
    assert await storage.offline.delete("alice", D, [bob_id]) == 0
    assert await storage.offline.delete("bob", D, [bob_id]) == 1
    assert await storage.offline.count("alice", D) == 1


@pytest_twisted.ensureDeferred
async def test_store_for_missing_account_raises(storage):
    """No offline messages can be kept for an account that does not exist."""
    with pytest.raises(NoSuchAccount):
        await storage.offline.store("ghost", D, "<m/>", 10)


@pytest_twisted.ensureDeferred
async def test_stores_arriving_together_share_transactions(storage):
    """Stores made while one is being written are committed together (group commit),
    each with its own outcome: stored, refused by the quota, or NoSuchAccount."""
    await storage.accounts.create("alice", D, "pw")
    calls = [storage.offline.store("alice", D, f"<message id='{n}'/>", 150) for n in range(200)]
    calls.append(storage.offline.store("nobody", D, "<message/>", 10))
    outcomes = [Deferred.fromCoroutine(c).addErrback(lambda f: f.value) for c in calls]
    results = await gatherResults(outcomes)
    assert results[:150] == [True] * 150 and results[150:200] == [False] * 50
    assert isinstance(results[200], NoSuchAccount)
    stored = await storage.offline.read("alice", D, 0, 1000)
    assert [text for _, text in stored] == [f"<message id='{n}'/>" for n in range(150)]
    group = storage.offline._stores
    assert group.calls == 201 and group.transactions < 20
