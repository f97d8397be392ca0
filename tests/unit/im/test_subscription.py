"""The RFC 6121 subscription state machine (Appendix A) as pure functions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedxmpp.im.subscription import inbound, new_item, outbound, visible
from fedxmpp.storage import RosterItem

C = "contact@example.net"


def state(spec: str | None) -> RosterItem | None:
    """'none', 'to+out', 'from+in', 'none+out+in', 'none+approved', 'in-only' (hidden), None."""
    if spec is None:
        return None
    if spec == "in-only":
        return replace(new_item(C, hidden=True), pending_in=True)
    sub, *flags = spec.split("+")
    return RosterItem(C, None, sub, "out" in flags, "in" in flags, (), "approved" in flags)


def spec(item: RosterItem | None) -> str | None:
    if item is None:
        return None
    if item.hidden:
        return "in-only" if item.pending_in else "hidden?"
    flags = [f for f, on in (("out", item.ask), ("in", item.pending_in), ("approved", item.approved)) if on]
    return "+".join([item.subscription, *flags])


# (before, kind, after, routed) for the user's own outbound stanzas (Appendix A.2).
OUTBOUND = [
    (None, "subscribe", "none+out", True),
    ("none", "subscribe", "none+out", True),
    ("in-only", "subscribe", "none+out+in", True),
    ("from", "subscribe", "from+out", True),
    ("to", "subscribe", "to", True),
    ("both", "subscribe", "both", True),
    ("to", "unsubscribe", "none", True),
    ("both", "unsubscribe", "from", True),
    ("none+out", "unsubscribe", "none", True),
    ("from+out", "unsubscribe", "from", True),
    ("in-only", "subscribed", "from", True),
    ("none+out+in", "subscribed", "from+out", True),
    ("to+in", "subscribed", "both", True),
    ("from", "subscribed", "from", False),
    (None, "subscribed", "none+approved", False),
    ("to", "subscribed", "to+approved", False),
    ("from", "unsubscribed", "none", True),
    ("both", "unsubscribed", "to", True),
    ("in-only", "unsubscribed", None, True),
    ("none+out+in", "unsubscribed", "none+out", True),
    ("none+approved", "unsubscribed", "none", False),
    ("to", "unsubscribed", "to", False),
    (None, "unsubscribed", None, False),
]


@pytest.mark.parametrize("before,kind,after,routed", OUTBOUND)
def test_outbound_transitions(before, kind, after, routed):
    """Each outbound subscription stanza moves the user's item to the RFC 6121
    Appendix A.2 state, and is routed only where the appendix routes it."""
    outcome = outbound(state(before), C, kind)
    assert spec(outcome.item) == after
    assert outcome.forward is routed
    assert outcome.changed == (spec(state(before)) != after)


# (before, kind, after, delivered, reply) for stanzas from the contact (Appendix A.3).
INBOUND = [
    (None, "subscribe", "in-only", True, None),
    ("none", "subscribe", "none+in", True, None),
    ("to", "subscribe", "to+in", True, None),
    ("in-only", "subscribe", "in-only", False, None),
    ("from", "subscribe", "from", False, "subscribed"),
    ("both", "subscribe", "both", False, "subscribed"),
    ("none+approved", "subscribe", "from", False, "subscribed"),
    ("to+approved", "subscribe", "both", False, "subscribed"),
    ("none+out", "subscribed", "to", True, None),
    ("from+out", "subscribed", "both", True, None),
    ("none", "subscribed", "none", False, None),
    ("to", "subscribed", "to", False, None),
    (None, "subscribed", None, False, None),
    ("from", "unsubscribe", "none", True, None),
    ("both", "unsubscribe", "to", True, None),
    ("in-only", "unsubscribe", None, True, None),
    ("to+in", "unsubscribe", "to", True, None),
    ("to", "unsubscribe", "to", False, None),
    ("to", "unsubscribed", "none", True, None),
    ("both", "unsubscribed", "from", True, None),
    ("none+out", "unsubscribed", "none", True, None),
    ("from", "unsubscribed", "from", False, None),
]


@pytest.mark.parametrize("before,kind,after,delivered,reply", INBOUND)
def test_inbound_transitions(before, kind, after, delivered, reply):
    """Each inbound subscription stanza moves the user's item to the Appendix A.3
    state; it is delivered to the user only when it changed something the user must
    decide on or learn, and an approved request is answered on the user's behalf."""
    outcome = inbound(state(before), C, kind)
    assert spec(outcome.item) == after
    assert outcome.forward is delivered
    assert outcome.reply == reply


def test_approval_sends_presence_and_cancellation_sends_unavailable():
    """Approving a request makes the server send the user's presence to the new
    subscriber (§3.1.5); cancelling makes it send unavailable (§3.2.2)."""
    assert outbound(state("in-only"), C, "subscribed").send_presence
    assert outbound(state("both"), C, "unsubscribed").send_unavailable
    assert not outbound(state("in-only"), C, "unsubscribed").send_unavailable


@pytest.mark.parametrize("before,sends", [("from", True), ("both", True), ("from+out", True),
                                          ("to+in", False), ("in-only", False), ("to", False)])
def test_inbound_unsubscribe_sends_unavailable_where_presence_was_shared(before, sends):
    """§3.3.3: when a contact who had a subscription to the user's presence ('from' or
    'both' in the user's roster) unsubscribes, the user's server sends the contact
    unavailable from the user's resources; cancelling a mere pending request shared
    no presence, so there is nothing to take back."""
    assert inbound(state(before), C, "unsubscribe").send_unavailable is sends


def test_pending_only_rows_are_hidden_until_acted_on():
    """A request from a stranger is remembered in a row the user does not see;
    answering it or asking back makes the row a real roster item."""
    row = inbound(None, C, "subscribe").item
    assert row is not None and not visible(row)
    assert visible(outbound(row, C, "subscribed").item)
    assert visible(outbound(row, C, "subscribe").item)


def test_unknown_kind_is_a_programming_error():
    """Only the four subscription types are state transitions."""
    with pytest.raises(ValueError):
        outbound(None, C, "probe")
    with pytest.raises(ValueError):
        inbound(None, C, "available")
