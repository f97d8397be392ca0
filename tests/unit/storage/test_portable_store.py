"""The bulk store behind ``fedxmpp import``/``export``: whole accounts in, whole accounts out."""

from __future__ import annotations

import pytest_twisted

from fedxmpp.storage import AccountBundle, ArchiveEntry, PubsubItem, PubsubNode, RosterItem, Storage, make_archive_id
from fedxmpp.storage.credentials import derive_all

D = "example.test"
CREDS = derive_all("bundle-pw-1", 4096)


def bundle(user: str, *, contacts: tuple[str, ...] = ("romeo@other.test",), offline: tuple[str, ...] = ("<m1/>",),
           subscription: str = "both") -> AccountBundle:
    ts = 1_600_000_000_000_000
    return AccountBundle(
        user, D, CREDS,
        roster=[RosterItem(c, "Name", subscription, False, False, ("G",)) for c in contacts],  # type: ignore[arg-type]
        documents={("vcard", ""): b"<vCard xmlns='vcard-temp'/>", ("private", "{p}q"): b"<q xmlns='p'/>"},
        offline=[f"<message to='{user}@{D}'><body>{o}</body></message>" for o in offline],
        pep=[(PubsubNode("urn:n", {"pubsub#max_items": "max"}), [PubsubItem("i1", f"{user}@{D}", "<x xmlns='n'/>", ts)])],
        archive=[ArchiveEntry(user, D, make_archive_id(ts, b"abcdef"), ts, "romeo@other.test", "", True,
                              "<message><body>hi</body></message>")])


def comparable(b: AccountBundle) -> tuple:
    return (b.user, b.domain, dict(b.credentials), list(b.roster), b.documents, list(b.offline),
            [(n, list(items)) for n, items in b.pep], [(e.timestamp, e.stanza, e.with_jid, e.outgoing) for e in b.archive])


@pytest_twisted.ensureDeferred
async def test_import_then_export_gives_the_bundle_back(storage: Storage):
    """What import_accounts writes, export_accounts reads back, part for part; the
    password works."""
    results = await storage.portable.import_accounts([bundle("alice"), bundle("bob")], "skip")
    assert [(r.user, r.outcome) for r in results] == [("alice", "created"), ("bob", "created")]
    exported = await storage.portable.export_accounts(D, ["alice", "bob", "nobody"])
    assert [comparable(b) for b in exported] == [comparable(bundle("alice")), comparable(bundle("bob"))]
    assert await storage.accounts.check_password("alice", D, "bundle-pw-1")


@pytest_twisted.ensureDeferred
async def test_existing_accounts_skip_merge_replace(storage: Storage):
    """skip leaves the account; merge twice adds offline messages and archive once and
    keeps roster items the bundle does not name; replace starts again from the bundle."""
    await storage.portable.import_accounts([bundle("alice", contacts=("a@x.test", "b@x.test"))], "skip")
    [r] = await storage.portable.import_accounts([bundle("alice", contacts=("c@x.test",))], "skip")
    assert r.outcome == "skipped"
    assert [i.jid for i in (await storage.roster.get_roster("alice", D))[1]] == ["a@x.test", "b@x.test"]
    for _ in range(2):
        [r] = await storage.portable.import_accounts([bundle("alice", contacts=("c@x.test",), offline=("<m1/>", "<m2/>"))],
                                                     "merge")
        assert r.outcome == "merged"
    assert [i.jid for i in (await storage.roster.get_roster("alice", D))[1]] == ["a@x.test", "b@x.test", "c@x.test"]
    assert await storage.offline.count("alice", D) == 2
    [exported] = await storage.portable.export_accounts(D, ["alice"])
    assert len(exported.archive) == 1
    [r] = await storage.portable.import_accounts([bundle("alice", contacts=("d@x.test",))], "replace")
    assert r.outcome == "replaced"
    assert [i.jid for i in (await storage.roster.get_roster("alice", D))[1]] == ["d@x.test"]
    assert await storage.offline.count("alice", D) == 1


@pytest_twisted.ensureDeferred
async def test_one_bad_account_fails_alone(storage: Storage):
    """A batch that one account spoils is written account by account: that one fails
    with its reason, wholly absent; the others are imported."""
    results = await storage.portable.import_accounts(
        [bundle("alice"), bundle("bad", subscription="bogus"), bundle("carol")], "skip")
    assert [(r.user, r.outcome) for r in results] == [("alice", "created"), ("bad", None), ("carol", "created")]
    assert "bogus" in (results[1].error or "")
    assert await storage.accounts.list_users(D) == ["alice", "carol"]
