"""The SQL message archive store (fedxmpp.storage.archive)."""

from __future__ import annotations

import inspect

import pytest
import pytest_twisted

from fedxmpp.storage import (
    ArchiveEntry,
    ArchivePrefs,
    ArchiveQuery,
    ArchiveStore,
    NoSuchAccount,
    UnknownArchiveId,
    archive_id_timestamp,
    make_archive_id,
)
from fedxmpp.storage.archive import SqlArchiveStore
from tests.unit.storage.fakes import MemoryAccountStore, MemoryArchiveStore

D = "example.test"
T0 = 1_700_000_000_000_000


def entry(n: int, user: str = "alice", with_jid: str = "bob@example.test", resource: str = "r",
          ts: int | None = None) -> ArchiveEntry:
    ts = T0 + n * 1_000_000 if ts is None else ts
    return ArchiveEntry(user, D, make_archive_id(ts, n.to_bytes(6, "big")), ts, with_jid, resource, n % 2 == 0,
                        f"<message id='m{n}'><body>{n}</body></message>")


def ids(page) -> list[str]:
    return [m.stanza.split("'")[1] for m in page.messages]


def test_sql_store_satisfies_the_protocol():
    """SqlArchiveStore has every method of the ArchiveStore protocol, each async."""
    methods = [n for n, v in vars(ArchiveStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["add", "bounds", "get_prefs", "purge", "query", "set_prefs"]
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(SqlArchiveStore, name)), name


def test_archive_ids_carry_their_timestamp():
    """An archive id is 19 URL-safe characters that give back the timestamp; other
    strings are not archive ids."""
    archive_id = make_archive_id(T0 + 123, b"\x01\x02\x03\x04\x05\x06")
    assert len(archive_id) == 19 and archive_id_timestamp(archive_id) == T0 + 123
    assert archive_id_timestamp("not an id") is None
    assert archive_id_timestamp("!" * 19) is None


async def _fill(storage, n: int = 25) -> list[ArchiveEntry]:
    await storage.accounts.create("alice", D, "pw")
    entries = [entry(i, with_jid="bob@example.test" if i % 3 else "carol@example.test") for i in range(n)]
    assert await storage.archive.add(entries) == n
    return entries


@pytest_twisted.ensureDeferred
async def test_forward_paging(storage):
    """Pages of 10 from the start: in order, 'complete' only on the last, first index
    and count of the whole set."""
    await _fill(storage)
    page = await storage.archive.query("alice", D, ArchiveQuery(max=10))
    assert ids(page) == [f"m{i}" for i in range(10)]
    assert (page.count, page.first_index, page.complete) == (25, 0, False)
    seen = ids(page)
    while not page.complete:
        page = await storage.archive.query("alice", D, ArchiveQuery(max=10, after=page.messages[-1].archive_id))
        seen += ids(page)
    assert seen == [f"m{i}" for i in range(25)]
    assert page.first_index == 20


@pytest_twisted.ensureDeferred
async def test_backward_paging_from_the_last_page(storage):
    """An empty <before/> gives the last page, in chronological order; paging back
    ends with 'complete' at the start of the archive."""
    entries = await _fill(storage)
    page = await storage.archive.query("alice", D, ArchiveQuery(max=10, before=""))
    assert ids(page) == [f"m{i}" for i in range(15, 25)] and page.first_index == 15 and not page.complete
    page = await storage.archive.query("alice", D, ArchiveQuery(max=10, before=entries[15].archive_id))
    assert ids(page) == [f"m{i}" for i in range(5, 15)] and not page.complete
    page = await storage.archive.query("alice", D, ArchiveQuery(max=10, before=entries[5].archive_id))
    assert ids(page) == [f"m{i}" for i in range(5)] and page.complete and page.first_index == 0


@pytest_twisted.ensureDeferred
async def test_filters(storage):
    """'with' (bare, or full for one resource), start/end (inclusive), after-id and
    before-id (exclusive), ids; count follows the filters."""
    entries = await _fill(storage)
    carol = await storage.archive.query("alice", D, ArchiveQuery(with_jid="carol@example.test", max=100))
    assert ids(carol) == [f"m{i}" for i in range(0, 25, 3)] and carol.count == 9
    assert (await storage.archive.query("alice", D, ArchiveQuery(with_jid="carol@example.test", with_resource="x",
                                                                 max=100))).count == 0
    window = await storage.archive.query("alice", D, ArchiveQuery(start=T0 + 3_000_000, end=T0 + 5_000_000))
    assert ids(window) == ["m3", "m4", "m5"]
    between = await storage.archive.query("alice", D, ArchiveQuery(after_id=entries[3].archive_id,
                                                                   before_id=entries[7].archive_id))
    assert ids(between) == ["m4", "m5", "m6"] and between.count == 3
    chosen = await storage.archive.query("alice", D, ArchiveQuery(ids=(entries[9].archive_id,
                                                                       entries[2].archive_id)))
    assert ids(chosen) == ["m2", "m9"]


@pytest_twisted.ensureDeferred
async def test_index_and_max_zero(storage):
    """RSM <index/> starts the page there; max 0 gives the count alone."""
    await _fill(storage)
    page = await storage.archive.query("alice", D, ArchiveQuery(index=20, max=3))
    assert ids(page) == ["m20", "m21", "m22"] and page.first_index == 20
    counted = await storage.archive.query("alice", D, ArchiveQuery(max=0))
    assert counted.messages == [] and counted.count == 25 and not counted.complete


@pytest.mark.parametrize("field", ["after", "before", "after_id", "before_id", "ids"])
@pytest_twisted.ensureDeferred
async def test_unknown_ids_raise(storage, field):
    """An id that is not in this user's archive (or is not an id) is UnknownArchiveId."""
    await _fill(storage, 3)
    await storage.accounts.create("bob", D, "pw")
    others = [entry(9, user="bob")]
    await storage.archive.add(others)
    for bad in (others[0].archive_id, "garbage"):
        value = (bad,) if field == "ids" else bad
        with pytest.raises(UnknownArchiveId):
            await storage.archive.query("alice", D, ArchiveQuery(**{field: value}))


@pytest_twisted.ensureDeferred
async def test_same_timestamp_keeps_arrival_order(storage):
    """Messages archived in the same microsecond stay in the order they were added,
    and paging after one of them goes on with the next."""
    await storage.accounts.create("alice", D, "pw")
    entries = [entry(i, ts=T0) for i in range(5)]
    await storage.archive.add(entries)
    page = await storage.archive.query("alice", D, ArchiveQuery(max=2, after=entries[1].archive_id))
    assert ids(page) == ["m2", "m3"]


@pytest_twisted.ensureDeferred
async def test_rows_for_unknown_accounts_are_skipped(storage):
    """One missing account does not fail the batch: the others are stored."""
    await storage.accounts.create("alice", D, "pw")
    assert await storage.archive.add([entry(1), entry(2, user="ghost"), entry(3)]) == 2
    assert ids(await storage.archive.query("alice", D, ArchiveQuery())) == ["m1", "m3"]


@pytest_twisted.ensureDeferred
async def test_bounds_and_purge(storage):
    """bounds() names the first and last message; purge() deletes only what is older
    than the cutoff, at most *limit* at a time."""
    entries = await _fill(storage, 10)
    first, last = await storage.archive.bounds("alice", D)
    assert (first.archive_id, last.archive_id) == (entries[0].archive_id, entries[9].archive_id)
    assert await storage.archive.purge(T0 + 5_000_000, 3) == 3
    assert await storage.archive.purge(T0 + 5_000_000, 3) == 2
    assert await storage.archive.purge(T0 + 5_000_000, 3) == 0
    assert ids(await storage.archive.query("alice", D, ArchiveQuery())) == [f"m{i}" for i in range(5, 10)]
    await storage.accounts.create("empty", D, "pw")
    assert await storage.archive.bounds("empty", D) is None


@pytest_twisted.ensureDeferred
async def test_prefs_round_trip(storage):
    """Preferences are None until set, then read back as set; none for a missing account."""
    await storage.accounts.create("alice", D, "pw")
    assert await storage.archive.get_prefs("alice", D) is None
    prefs = ArchivePrefs("roster", frozenset({"bob@example.test"}), frozenset({"eve@example.test/x"}))
    await storage.archive.set_prefs("alice", D, prefs)
    assert await storage.archive.get_prefs("alice", D) == prefs
    await storage.archive.set_prefs("alice", D, ArchivePrefs("never"))
    assert await storage.archive.get_prefs("alice", D) == ArchivePrefs("never")
    with pytest.raises(NoSuchAccount):
        await storage.archive.set_prefs("ghost", D, prefs)


@pytest_twisted.ensureDeferred
async def test_deleting_the_account_deletes_its_archive(storage):
    """The archive and preferences go with the account (ON DELETE CASCADE)."""
    await _fill(storage, 3)
    await storage.archive.set_prefs("alice", D, ArchivePrefs("never"))
    await storage.accounts.delete("alice", D)
    await storage.accounts.create("alice", D, "pw")
    assert (await storage.archive.query("alice", D, ArchiveQuery())).count == 0
    assert await storage.archive.get_prefs("alice", D) is None


@pytest_twisted.ensureDeferred
async def test_memory_fake_agrees_with_sql(storage):
    """The in-memory fake used by feature tests pages like the SQL store."""
    entries = await _fill(storage)
    accounts = MemoryAccountStore()
    accounts.put("alice", D, {})
    fake = MemoryArchiveStore(accounts)
    await fake.add(entries)
    queries = [ArchiveQuery(max=7), ArchiveQuery(max=7, before=""), ArchiveQuery(max=4, after=entries[10].archive_id),
               ArchiveQuery(max=4, before=entries[10].archive_id), ArchiveQuery(with_jid="carol@example.test", max=2),
               ArchiveQuery(index=3, max=5), ArchiveQuery(max=0), ArchiveQuery(start=T0 + 20_000_000),
               ArchiveQuery(after_id=entries[2].archive_id, before_id=entries[9].archive_id, max=3, before="")]
    for q in queries:
        assert await fake.query("alice", D, q) == await storage.archive.query("alice", D, q), q


@pytest_twisted.ensureDeferred
async def test_large_batches_are_written_whole_and_in_order(storage):
    """A batch larger than one INSERT statement, for several users, is stored whole
    (minus the unknown account's rows) and each archive keeps the batch's order."""
    users = ["alice", "bob", "carol"]
    for user in users:
        await storage.accounts.create(user, D, "pw")
    batch = [entry(i, user=(users + ["ghost"])[i % 4], ts=T0) for i in range(1000)]
    assert await storage.archive.add(batch) == 750
    for n, user in enumerate(users):
        page = await storage.archive.query(user, D, ArchiveQuery(max=1000))
        assert ids(page) == [f"m{i}" for i in range(n, 1000, 4)]
