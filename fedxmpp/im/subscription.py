"""The presence subscription state machine of RFC 6121 §3 and Appendix A, as pure functions.

A user's roster item for a contact holds the state: ``subscription`` (none, to,
from, both), ``ask`` (pending out), ``pending_in`` and ``approved``
(pre-approval, §3.4).  :func:`outbound` is what the user's server does when the
user sends a subscription stanza to the contact; :func:`inbound` what it does
when the contact's stanza reaches the user.  Both return an :class:`Outcome`:
the new item, and what to send.  :mod:`fedxmpp.im.presence` carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeGuard

from fedxmpp.storage import RosterItem
from fedxmpp.storage.roster import Subscription

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})

_ADD_TO: dict[str, Subscription] = {"none": "to", "from": "both", "to": "to", "both": "both"}
_DROP_TO: dict[str, Subscription] = {"to": "none", "both": "from", "none": "none", "from": "from"}
_ADD_FROM: dict[str, Subscription] = {"none": "from", "to": "both", "from": "from", "both": "both"}
_DROP_FROM: dict[str, Subscription] = {"from": "none", "both": "to", "none": "none", "to": "to"}


@dataclass(frozen=True)
class Outcome:
    #: The item after the stanza (None: no row at all).
    item: RosterItem | None
    #: Whether the item differs from before (store it, push it).
    changed: bool
    #: Outbound: route the stanza to the contact.  Inbound: deliver it to the
    #: user's available resources.
    forward: bool
    #: Inbound only: the type of a presence the user's server answers with on the
    #: user's behalf ('subscribed' when already approved or pre-approved).
    reply: str | None = None
    #: Send the presence of the user's available resources to the contact.
    send_presence: bool = False
    #: Send unavailable presence from the user's available resources to the contact:
    #: the user's presence is no longer the contact's to see (§3.2.2 when the user
    #: cancels the contact's subscription, §3.3.3 when the contact unsubscribes).
    send_unavailable: bool = False


def new_item(contact: str, *, hidden: bool = False) -> RosterItem:
    return RosterItem(jid=contact, name=None, subscription="none", ask=False, pending_in=False,
                      groups=(), hidden=hidden)


def visible(item: RosterItem | None) -> TypeGuard[RosterItem]:
    """Whether the item is shown to the user (roster results and pushes)."""
    return item is not None and not item.hidden


def _outcome(before: RosterItem | None, after: RosterItem | None, forward: bool, **kw: object) -> Outcome:
    if after is not None and after.hidden:
        if after.subscription != "none" or after.ask or after.approved:
            after = replace(after, hidden=False)
        elif not after.pending_in:
            after = None  # nothing left to remember
    return Outcome(after, after != before, forward, **kw)  # type: ignore[arg-type]


def outbound(item: RosterItem | None, contact: str, kind: str) -> Outcome:
    """The user sends a *kind* subscription stanza to *contact* (RFC 6121 §3.1.2,
    §3.2.2, §3.3.2, §3.4, Appendix A.2)."""
    sub = item.subscription if item is not None else "none"
    if kind == "subscribe":
        # Always routed: if the contact already approved, its server answers 'subscribed'.
        if sub in ("to", "both"):
            return Outcome(item, False, True)
        return _outcome(item, replace(item or new_item(contact), ask=True, hidden=False), True)
    if kind == "unsubscribe":
        if item is None:
            return Outcome(None, False, True)
        return _outcome(item, replace(item, subscription=_DROP_TO[sub], ask=False), True)
    if kind == "subscribed":
        if item is not None and item.pending_in:
            after = replace(item, subscription=_ADD_FROM[sub], pending_in=False, approved=False, hidden=False)
            return _outcome(item, after, True, send_presence=True)
        if sub in ("from", "both"):
            return Outcome(item, False, False)
        # No request to approve: a pre-approval (§3.4), kept by the server, not routed.
        return _outcome(item, replace(item or new_item(contact), approved=True, hidden=False), False)
    if kind == "unsubscribed":
        if item is None:
            return Outcome(None, False, False)
        cancels = sub in ("from", "both") or item.pending_in
        after = replace(item, subscription=_DROP_FROM[sub], pending_in=False, approved=False)
        return _outcome(item, after, cancels, send_unavailable=sub in ("from", "both"))
    raise ValueError(f"not a subscription type: {kind!r}")


def inbound(item: RosterItem | None, contact: str, kind: str) -> Outcome:
    """A *kind* subscription stanza from *contact* reaches the user (RFC 6121 §3.1.3,
    §3.1.6, §3.2.3, §3.3.3, §3.4, Appendix A.3)."""
    sub = item.subscription if item is not None else "none"
    if kind == "subscribe":
        if sub in ("from", "both"):
            # Already approved: answer for the user, deliver nothing (§3.1.3).
            return Outcome(item, False, False, reply="subscribed", send_presence=True)
        if item is not None and item.approved:
            after = replace(item, subscription=_ADD_FROM[sub], approved=False, pending_in=False)
            return _outcome(item, after, False, reply="subscribed", send_presence=True)
        if item is not None and item.pending_in:
            return Outcome(item, False, False)  # already waiting for the user's answer
        return _outcome(item, replace(item or new_item(contact, hidden=True), pending_in=True), True)
    if kind == "subscribed":
        if item is None or not item.ask:
            return Outcome(item, False, False)  # nothing was asked: ignored (A.3.2)
        return _outcome(item, replace(item, subscription=_ADD_TO[sub], ask=False), True)
    if kind == "unsubscribe":
        if item is None or (sub not in ("from", "both") and not item.pending_in):
            return Outcome(item, False, False)
        return _outcome(item, replace(item, subscription=_DROP_FROM[sub], pending_in=False), True,
                        send_unavailable=sub in ("from", "both"))
    if kind == "unsubscribed":
        if item is None or (sub not in ("to", "both") and not item.ask):
            return Outcome(item, False, False)
        return _outcome(item, replace(item, subscription=_DROP_TO[sub], ask=False), True)
    raise ValueError(f"not a subscription type: {kind!r}")
