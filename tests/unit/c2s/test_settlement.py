"""InOrder: a client's stanzas counted as settled only in the order they came."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from fedxmpp.c2s.settlement import InOrder


def test_settled_counts_only_a_prefix_and_watchers_fire_in_order():
    """A stanza settled early does not count before an earlier one that is not;
    stanzas sharing one outcome (an archive batch) settle together; watchers fire
    when the count they wait for is settled, in the order they asked."""
    pending_seen: list[int] = []
    order = InOrder(pending_seen.append)
    batch: Deferred[None] = Deferred()
    later: Deferred[None] = Deferred()
    order.add(None)
    order.add(batch)
    order.add(batch)
    order.add(None)
    order.add(later)
    fired: list[str] = []
    order.when(4, lambda: fired.append("four"))
    order.when(5, lambda: fired.append("five"))
    assert (order.settled, order.pending, fired) == (1, 4, [])
    later.callback(None)
    assert (order.settled, fired) == (1, [])
    batch.callback(None)
    assert (order.settled, order.pending, fired) == (5, 0, ["four", "five"])
    assert max(pending_seen) == 4 and pending_seen[-1] == 0


def test_watchers_on_settled_stanzas_fire_at_once():
    order = InOrder()
    order.add(None)
    fired: list[int] = []
    order.when(1, lambda: fired.append(1))
    assert fired == [1]
