"""The SQL store of XEP-0357 push registrations (migration 9)."""

from __future__ import annotations

import pytest
import pytest_twisted

from fedxmpp.storage import NoSuchAccount, PushRegistration

D = "example.test"


@pytest_twisted.ensureDeferred
async def test_enable_replaces_keeps_the_newest_and_disable_removes(storage):
    """A registration is keyed by app server and node: enabling it again replaces
    its options; beyond *keep* the oldest goes; disable without a node removes
    every node of that app server; rows go with the account."""
    await storage.accounts.create("bob", D, "pw")
    push = storage.push
    await push.enable("bob", D, PushRegistration("p.example.net", "n1", {"secret": ["a"]}, 100), keep=3)
    await push.enable("bob", D, PushRegistration("p.example.net", "n2", {}, 101), keep=3)
    now = await push.enable("bob", D, PushRegistration("p.example.net", "n1", {"secret": ["b"]}, 102), keep=3)
    assert [(r.node, r.options, r.enabled_at) for r in now] == [("n2", {}, 101), ("n1", {"secret": ["b"]}, 102)]
    await push.enable("bob", D, PushRegistration("q.example.net", "x", {}, 103), keep=3)
    await push.enable("bob", D, PushRegistration("r.example.net", "y", {}, 104), keep=3)
    assert [r.key for r in await push.registrations("bob", D)] == [
        ("p.example.net", "n1"), ("q.example.net", "x"), ("r.example.net", "y")]
    assert await push.disable("bob", D, "q.example.net", "other") == 0
    assert await push.disable("bob", D, "q.example.net", "x") == 1
    await push.enable("bob", D, PushRegistration("p.example.net", "n3", {}, 105), keep=3)
    assert await push.disable("bob", D, "p.example.net", None) == 2
    assert [r.key for r in await push.registrations("bob", D)] == [("r.example.net", "y")]
    await storage.accounts.delete("bob", D)
    assert await push.registrations("bob", D) == []
    with pytest.raises(NoSuchAccount):
        await push.enable("bob", D, PushRegistration("p.example.net", "n1", {}, 106), keep=3)
