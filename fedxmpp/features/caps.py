"""XEP-0115: Entity Capabilities of the server, in the client stream features.

After authentication the features a client receives carry
``<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node=... ver=.../>``
(XEP-0115 §6.3), so that a client that has seen this server's disco#info before
needs no query.  A disco#info query to ``node#ver`` is answered with the
server's info (see :mod:`fedxmpp.features.disco`).

The verification string (§5.1) is computed from ``ctx.disco``'s server
identities and features the first time it is needed, once every feature has
registered, and computed again only when those facts change.

The server does not list 'http://jabber.org/protocol/caps' among its own
features: XEP-0115 §8.4 makes that a promise of presence "caps optimisation",
which this server does not do.
"""

from __future__ import annotations

import base64
import hashlib

from twisted.words.xish import domish

from fedxmpp.hooks import Hooks
from fedxmpp.im.context import Disco, Identity, ServerContext

CAPS = "http://jabber.org/protocol/caps"
# The URI naming this software (XEP-0115 §4 'node').
NODE = "https://pypi.org/project/fedxmpp/"


def verification_string(identities: set[Identity], features: set[str]) -> str:
    """XEP-0115 §5.1 with SHA-1: identities 'category/type/lang/name<' sorted, then
    features 'var<' sorted (byte order), hashed and base64-encoded.  This server
    has no identity names in several languages and no XEP-0128 forms."""
    s = "".join(f"{i.category}/{i.type}//{i.name}<"
                for i in sorted(identities, key=lambda i: (i.category, i.type, "", i.name)))
    s += "".join(f"{f}<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode("ascii")


class ServerCaps:
    """The server's current verification string, recomputed only when the facts change."""

    def __init__(self, disco: Disco) -> None:
        self.disco = disco
        self._features: frozenset[str] | None = None
        self._identities: frozenset[Identity] | None = None
        self._ver = ""
        self.computed = 0

    @property
    def ver(self) -> str:
        d = self.disco
        # Set comparisons cost far less than hashing; copies are taken only on change.
        if self._features != d.server_features or self._identities != d.server_identities:
            self._features = frozenset(d.server_features)
            self._identities = frozenset(d.server_identities)
            self._ver = verification_string(set(self._identities), set(self._features))
            self.computed += 1
        return self._ver

    def element(self) -> domish.Element:
        c = domish.Element((CAPS, "c"))
        c["hash"] = "sha-1"
        c["node"] = NODE
        c["ver"] = self.ver
        return c


def register(hooks: Hooks, ctx: ServerContext) -> None:
    caps = ServerCaps(ctx.disco)

    def stream_features(features: domish.Element) -> None:
        features.addChild(caps.element())

    ctx.disco.server_info_nodes.append(lambda node: node == f"{NODE}#{caps.ver}")
    hooks.add("c2s/features", stream_features)
