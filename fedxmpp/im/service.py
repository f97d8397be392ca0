"""The RFC 6121 instant-messaging core, built in one place for app.py and the tests.

Roster, presence and offline messages are not optional features: every hosted
domain has them.  :func:`install` builds them around one
:class:`~fedxmpp.im.serial.SerialJobs`, hooks them into the delivery events,
and puts :class:`~fedxmpp.im.roster.Roster` and
:class:`~fedxmpp.im.presence.Presence` on the feature context for features to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedxmpp.im.offline import OfflineMessages
from fedxmpp.im.outbound import ClientOutbound
from fedxmpp.im.presence import Presence
from fedxmpp.im.roster import Roster
from fedxmpp.im.serial import SerialJobs

if TYPE_CHECKING:
    from fedxmpp.im.context import ServerContext


@dataclass
class InstantMessaging:
    serial: SerialJobs
    roster: Roster
    offline: OfflineMessages
    presence: Presence
    #: What client sessions route through (their ``router``).
    outbound: ClientOutbound


def install(ctx: ServerContext) -> InstantMessaging:
    """Build the IM core on *ctx* (whose ``storage`` may still be None: it is read
    when first needed) and set ``ctx.roster`` and ``ctx.presence``."""
    im_cfg = ctx.config.im
    serial = SerialJobs()
    roster = Roster(ctx, serial, max_items=im_cfg.max_roster_items)
    offline = OfflineMessages(ctx, quota=im_cfg.offline_quota)
    presence = Presence(ctx, roster, serial, offline)
    outbound = ClientOutbound(ctx.hooks, ctx.router, ctx.sessions)
    ctx.roster = roster
    ctx.presence = presence
    ctx.outbound = outbound
    return InstantMessaging(serial, roster, offline, presence, outbound)
