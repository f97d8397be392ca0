"""The SQL store of persistent MUC rooms."""

from __future__ import annotations

import inspect

import pytest_twisted

import pytest

from fedxmpp.storage import ArchivedMessage, ArchiveQuery, MucStore, StoredRoom, UnknownArchiveId, make_archive_id
from fedxmpp.storage.muc import SqlMucStore
from tests.unit.storage.fakes import MemoryMucStore

D = "conference.example.test"


def test_stores_satisfy_the_protocol():
    """SqlMucStore and its in-memory fake have every MucStore method, each async."""
    methods = [n for n, v in vars(MucStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["archive", "delete", "query", "rooms", "save"]
    for cls in (SqlMucStore, MemoryMucStore):
        for name in methods:
            assert inspect.iscoroutinefunction(getattr(cls, name)), (cls, name)


@pytest_twisted.ensureDeferred
async def test_save_replace_list_delete(storage):
    """Rooms are listed per domain in name order, replaced on save, and deleted."""
    muc = storage.muc
    assert await muc.rooms(D) == []
    await muc.save(StoredRoom(D, "lobby", '{"name": "Lobby"}', '{"a@x": "owner"}', '{}'))
    await muc.save(StoredRoom(D, "attic", "{}", "{}", "{}"))
    await muc.save(StoredRoom("other.test", "lobby", "{}", "{}", "{}"))
    await muc.save(StoredRoom(D, "lobby", '{"name": "Hall"}', '{"a@x": "owner"}', '{"text": "hi"}'))
    rooms = await muc.rooms(D)
    assert [r.room for r in rooms] == ["attic", "lobby"]
    assert rooms[1] == StoredRoom(D, "lobby", '{"name": "Hall"}', '{"a@x": "owner"}', '{"text": "hi"}')
    assert await muc.delete(D, "lobby") is True
    assert await muc.delete(D, "lobby") is False
    assert [r.room for r in await muc.rooms(D)] == ["attic"]
    assert len(await muc.rooms("other.test")) == 1


def _msg(n: int) -> ArchivedMessage:
    ts = 1_700_000_000_000_000 + n * 1_000_000
    return ArchivedMessage(make_archive_id(ts, n.to_bytes(6, "big")), ts, f"<message><body>{n}</body></message>")


@pytest_twisted.ensureDeferred
async def test_room_archive_keeps_the_newest_and_pages(storage):
    """A room's archive keeps its newest *keep* messages; queries filter by time and
    page forwards and backwards; an unknown id is UnknownArchiveId; deleting the
    room deletes its archive; rooms do not see each other's messages."""
    muc = storage.muc
    messages = [_msg(n) for n in range(8)]
    await muc.archive(D, "lobby", messages[:5], keep=6)
    await muc.archive(D, "lobby", messages[5:], keep=6)
    await muc.archive(D, "attic", [_msg(100)], keep=6)
    page = await muc.query(D, "lobby", ArchiveQuery(max=4))
    assert [m.archive_id for m in page.messages] == [m.archive_id for m in messages[2:6]]
    assert (page.count, page.first_index, page.complete) == (6, 0, False)
    last = await muc.query(D, "lobby", ArchiveQuery(max=3, before=""))
    assert [m.stanza for m in last.messages] == [m.stanza for m in messages[5:]] and last.first_index == 3
    after = await muc.query(D, "lobby", ArchiveQuery(max=10, after=messages[6].archive_id))
    assert [m.archive_id for m in after.messages] == [messages[7].archive_id] and after.complete
    ranged = await muc.query(D, "lobby", ArchiveQuery(start=messages[3].timestamp, end=messages[4].timestamp))
    assert [m.archive_id for m in ranged.messages] == [messages[3].archive_id, messages[4].archive_id]
    with pytest.raises(UnknownArchiveId):
        await muc.query(D, "lobby", ArchiveQuery(after=messages[0].archive_id))  # dropped by keep
    await muc.save(StoredRoom(D, "lobby", "{}", "{}", "{}"))
    assert await muc.delete(D, "lobby", with_archive=False)  # no longer persistent, still there
    assert (await muc.query(D, "lobby", ArchiveQuery())).count == 6
    await muc.delete(D, "lobby")
    assert (await muc.query(D, "lobby", ArchiveQuery())).count == 0
    assert (await muc.query(D, "attic", ArchiveQuery())).count == 1
