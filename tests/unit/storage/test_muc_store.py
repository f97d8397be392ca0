"""The SQL store of persistent MUC rooms."""

from __future__ import annotations

import inspect

import pytest_twisted

from fedxmpp.storage import MucStore, StoredRoom
from fedxmpp.storage.muc import SqlMucStore
from tests.unit.storage.fakes import MemoryMucStore

D = "conference.example.test"


def test_stores_satisfy_the_protocol():
    """SqlMucStore and its in-memory fake have every MucStore method, each async."""
    methods = [n for n, v in vars(MucStore).items() if not n.startswith("_") and callable(v)]
    assert sorted(methods) == ["delete", "rooms", "save"]
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
