"""The server's shared parts, as the IM core and every feature module are given them.

Features hook into named events (see :mod:`fedxmpp.im.delivery`) and use only
what is here, so that a XEP is one module and one line in ``ENABLED``.  It lives
in ``im`` because the IM core is built on it too, and im never imports features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

from fedxmpp.config import Config
from fedxmpp.hooks import Hooks
from fedxmpp.im.sessions import SessionManager
from fedxmpp.router import Router


@dataclass(frozen=True)
class Identity:
    category: str
    type: str
    name: str = ""


@dataclass
class Disco:
    """XEP-0030 facts that features declare about the server and about accounts.

    ``server_*`` describe each hosted domain; ``account_*`` each user's bare JID.
    The disco feature module answers queries from these; other features only add.
    """

    server_features: set[str] = field(default_factory=set)
    server_identities: set[Identity] = field(default_factory=set)
    account_features: set[str] = field(default_factory=set)
    account_identities: set[Identity] = field(default_factory=set)
    # Functions returning (jid, name) pairs for the server's disco#items, e.g.
    # connected and configured components; called per query.
    item_providers: list[Any] = field(default_factory=list)
    # Predicates on a disco#info 'node': True when the server's own info answers
    # for that node too (XEP-0115: the caps 'node#ver' of the server).
    server_info_nodes: list[Any] = field(default_factory=list)


@dataclass
class ServerContext:
    config: Config
    hooks: Hooks
    router: Router
    sessions: SessionManager
    clock: IReactorTime
    disco: Disco
    # fedxmpp.storage.Storage once the database is open (None before start).
    storage: Any = None
    # fedxmpp.im.roster.Roster: rosters with pushes (get, set_item, remove).
    roster: Any = None
    # fedxmpp.im.presence.Presence: who is available, presence broadcasts.
    presence: Any = None
    # fedxmpp.im.outbound.ClientOutbound: how a user's own stanzas leave (pre- events, then the router).
    outbound: Any = None
