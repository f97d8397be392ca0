"""The SQL roster store."""

from __future__ import annotations

import inspect

import pytest
import pytest_twisted

from fedxmpp.storage import NoSuchAccount, RosterItem, RosterStore
from fedxmpp.storage.roster import SqlRosterStore

D = "example.test"


def item(jid: str, **kw) -> RosterItem:
    fields = dict(name=None, subscription="none", ask=False, pending_in=False, groups=())
    fields.update(kw)
    return RosterItem(jid=jid, **fields)


def test_sql_store_satisfies_the_protocol():
    """SqlRosterStore has every method of the RosterStore protocol, each async."""
    methods = [n for n, v in vars(RosterStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["get_item", "get_roster", "remove_item", "set_item"]
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(SqlRosterStore, name)), name


@pytest_twisted.ensureDeferred
async def test_empty_roster_has_version_zero(storage):
    """A user who never had a roster gets version 0 and no items."""
    await storage.accounts.create("alice", D, "pw")
    assert await storage.roster.get_roster("alice", D) == (0, [])
    assert await storage.roster.get_item("alice", D, "bob@example.test") is None


@pytest_twisted.ensureDeferred
async def test_set_get_round_trip_with_every_field(storage):
    """Every field of an item survives storage, including unicode groups and pre-approval."""
    await storage.accounts.create("alice", D, "pw")
    stored = item("bob@example.test", name="Bob ☃", subscription="from", ask=True, pending_in=True,
                  groups=("Friends", "Wörk"), approved=True, hidden=True)
    version = await storage.roster.set_item("alice", D, stored)
    assert version == 1
    assert await storage.roster.get_item("alice", D, "bob@example.test") == stored
    assert await storage.roster.get_roster("alice", D) == (1, [stored])


@pytest_twisted.ensureDeferred
async def test_every_write_bumps_the_version_and_replaces(storage):
    """set_item replaces the existing row; each write returns a higher version;
    removing a missing contact leaves the version alone."""
    await storage.accounts.create("alice", D, "pw")
    r = storage.roster
    v1 = await r.set_item("alice", D, item("bob@example.test", name="B"))
    v2 = await r.set_item("alice", D, item("bob@example.test", name="Bobby", subscription="both"))
    v3 = await r.set_item("alice", D, item("carol@other.test"))
    assert v1 < v2 < v3
    version, items = await r.get_roster("alice", D)
    assert version == v3
    assert [(i.jid, i.name, i.subscription) for i in items] == [
        ("bob@example.test", "Bobby", "both"), ("carol@other.test", None, "none")]
    v4 = await r.remove_item("alice", D, "bob@example.test")
    assert v4 > v3
    assert await r.remove_item("alice", D, "bob@example.test") == v4
    assert [i.jid for i in (await r.get_roster("alice", D))[1]] == ["carol@other.test"]


@pytest_twisted.ensureDeferred
async def test_rosters_are_per_user(storage):
    """One user's items and version are not another's, nor the same name on another domain."""
    for user, domain in (("alice", D), ("bob", D), ("alice", "other.test")):
        await storage.accounts.create(user, domain, "pw")
    await storage.roster.set_item("alice", D, item("x@example.test"))
    assert await storage.roster.get_roster("bob", D) == (0, [])
    assert await storage.roster.get_roster("alice", "other.test") == (0, [])


@pytest_twisted.ensureDeferred
async def test_writing_for_a_missing_account_raises(storage):
    """No roster rows can exist for an account that does not exist."""
    with pytest.raises(NoSuchAccount):
        await storage.roster.set_item("ghost", D, item("bob@example.test"))


@pytest_twisted.ensureDeferred
async def test_bad_subscription_is_refused(storage):
    """A subscription value outside none/to/from/both is a programming error."""
    await storage.accounts.create("alice", D, "pw")
    with pytest.raises(ValueError):
        await storage.roster.set_item("alice", D, item("bob@example.test", subscription="pending"))
