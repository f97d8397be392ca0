"""The SQL pubsub store (fedxmpp.storage.pubsub)."""

from __future__ import annotations

import inspect

import pytest
import pytest_twisted

from fedxmpp.storage import NoSuchAccount, PubsubItem, PubsubNode, PubsubStore
from fedxmpp.storage.pubsub import SqlPubsubStore

D = "example.test"
NODE = PubsubNode("urn:xmpp:avatar:metadata", {"pubsub#access_model": "open"}, {"bob@example.test": "member"})


def item(item_id: str, n: int = 0) -> PubsubItem:
    return PubsubItem(item_id, "alice@example.test/phone", f"<x xmlns='urn:t'>{n}</x>", 1_000 + n)


def test_sql_store_satisfies_the_protocol():
    """SqlPubsubStore has every method of the PubsubStore protocol, each async."""
    methods = [n for n, v in vars(PubsubStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["create_node", "delete_node", "items", "last_items", "nodes", "publish", "purge",
                               "retract", "update_node"]
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(SqlPubsubStore, name)), name


@pytest_twisted.ensureDeferred
async def test_nodes_are_created_once_and_read_back(storage):
    """A node comes back with its configuration and affiliations; creating it again
    is False; a node for a missing account is NoSuchAccount."""
    await storage.accounts.create("alice", D, "pw")
    assert await storage.pubsub.create_node("alice", D, NODE, 1)
    assert not await storage.pubsub.create_node("alice", D, NODE, 2)
    assert await storage.pubsub.nodes("alice", D) == [NODE]
    changed = PubsubNode(NODE.node, {"pubsub#access_model": "whitelist"}, {})
    assert await storage.pubsub.update_node("alice", D, changed)
    assert await storage.pubsub.nodes("alice", D) == [changed]
    assert not await storage.pubsub.update_node("alice", D, PubsubNode("nope"))
    with pytest.raises(NoSuchAccount):
        await storage.pubsub.create_node("ghost", D, NODE, 1)


@pytest_twisted.ensureDeferred
async def test_publish_keeps_the_newest_and_republish_moves_to_the_end(storage):
    """Items are kept oldest first up to max_items; publishing an existing id replaces
    it and makes it the newest; the dropped ids are returned."""
    await storage.accounts.create("alice", D, "pw")
    await storage.pubsub.create_node("alice", D, NODE, 1)
    store = storage.pubsub
    assert await store.publish("alice", D, NODE.node, item("a", 1), 3) == []
    assert await store.publish("alice", D, NODE.node, item("b", 2), 3) == []
    assert await store.publish("alice", D, NODE.node, item("a", 3), 3) == []
    assert [i.item_id for i in await store.items("alice", D, NODE.node)] == ["b", "a"]
    assert await store.publish("alice", D, NODE.node, item("c", 4), 3) == []
    assert await store.publish("alice", D, NODE.node, item("d", 5), 3) == ["b"]
    got = await store.items("alice", D, NODE.node)
    assert [(i.item_id, i.payload) for i in got] == [("a", "<x xmlns='urn:t'>3</x>"), ("c", "<x xmlns='urn:t'>4</x>"),
                                                      ("d", "<x xmlns='urn:t'>5</x>")]
    assert [i.item_id for i in await store.items("alice", D, NODE.node, last=2)] == ["c", "d"]
    assert [i.item_id for i in await store.items("alice", D, NODE.node, item_ids=["d", "a", "zz"])] == ["a", "d"]
    assert (await store.last_items("alice", D))[NODE.node].item_id == "d"
    with pytest.raises(LookupError):
        await store.publish("alice", D, "no-such-node", item("x"), 1)


@pytest_twisted.ensureDeferred
async def test_retract_purge_and_delete(storage):
    """Retract removes one item (False when absent); purge empties the node; deleting
    the node removes its items; last_items follows."""
    await storage.accounts.create("alice", D, "pw")
    store = storage.pubsub
    for name in ("n1", "n2"):
        await store.create_node("alice", D, PubsubNode(name), 1)
        for i in range(3):
            await store.publish("alice", D, name, item(f"{name}-{i}", i), 10)
    assert await store.retract("alice", D, "n1", "n1-2")
    assert not await store.retract("alice", D, "n1", "n1-2")
    assert {n: i.item_id for n, i in (await store.last_items("alice", D)).items()} == {"n1": "n1-1", "n2": "n2-2"}
    assert await store.purge("alice", D, "n1") == 2
    assert list(await store.last_items("alice", D)) == ["n2"]
    assert await store.delete_node("alice", D, "n2")
    assert not await store.delete_node("alice", D, "n2")
    assert [n.node for n in await store.nodes("alice", D)] == ["n1"]
    await store.create_node("alice", D, PubsubNode("n2"), 2)
    assert await store.items("alice", D, "n2") == []


@pytest_twisted.ensureDeferred
async def test_deleting_the_account_deletes_its_nodes(storage):
    """Nodes and items go with the account (ON DELETE CASCADE)."""
    await storage.accounts.create("alice", D, "pw")
    await storage.pubsub.create_node("alice", D, NODE, 1)
    await storage.pubsub.publish("alice", D, NODE.node, item("a"), 1)
    await storage.accounts.delete("alice", D)
    await storage.accounts.create("alice", D, "pw")
    assert await storage.pubsub.nodes("alice", D) == []
    assert await storage.pubsub.items("alice", D, NODE.node) == []
