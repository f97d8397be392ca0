"""The SQL store of stanzas held for hibernating sessions (migration 7)."""

from __future__ import annotations

import pytest_twisted

from fedxmpp.storage import PendingStanza

D = "example.test"


@pytest_twisted.ensureDeferred
async def test_rows_come_back_in_order_and_go_per_session(storage):
    """Rows are kept in one transaction per add, read back oldest first, and
    removed per resume id; rows of an account that is gone are not kept."""
    await storage.accounts.create("bob", D, "pw")
    await storage.sm_pending.add([PendingStanza("r1", "bob", D, "desk", f"<message id='{n}'/>") for n in range(3)])
    await storage.sm_pending.add([PendingStanza("r2", "bob", D, "phone", "<iq id='x'/>"),
                                  PendingStanza("r3", "nobody", D, "x", "<message/>")])
    rows = await storage.sm_pending.all()
    assert [(r.resume_id, r.resource, r.stanza) for r in rows] == [
        ("r1", "desk", "<message id='0'/>"), ("r1", "desk", "<message id='1'/>"),
        ("r1", "desk", "<message id='2'/>"), ("r2", "phone", "<iq id='x'/>")]
    await storage.sm_pending.remove("r1")
    assert [r.resume_id for r in await storage.sm_pending.all()] == ["r2"]
    await storage.accounts.delete("bob", D)
    assert await storage.sm_pending.all() == []
