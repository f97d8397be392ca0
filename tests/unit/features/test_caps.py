"""XEP-0115 entity capabilities of the server (fedxmpp.features.caps)."""

from __future__ import annotations

import base64
import hashlib

from twisted.words.xish import domish

from fedxmpp.features import caps
from fedxmpp.im.context import Identity
from fedxmpp.xml import ns
from tests.unit.features.world import World


def test_verification_string_matches_the_xep_example():
    """XEP-0115 §5.2's simple example hashes to the published value."""
    identities = {Identity("client", "pc", "Exodus 0.9.1")}
    features = {"http://jabber.org/protocol/caps", ns.DISCO_INFO, ns.DISCO_ITEMS, "http://jabber.org/protocol/muc"}
    assert caps.verification_string(identities, features) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_verification_string_sorts_identities_and_features():
    """Order of declaration does not matter; the S string is category/type//name<...var<."""
    identities = {Identity("server", "im", "fedxmpp"), Identity("pubsub", "pep")}
    s = "pubsub/pep//<server/im//fedxmpp<a<b<"
    expected = base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()
    assert caps.verification_string(identities, {"b", "a"}) == expected


def features_element(w: World) -> domish.Element:
    features = domish.Element((ns.STREAMS, "features"))
    w.hooks.fire("c2s/features", features)
    return features


def test_caps_in_stream_features_verify_against_disco_facts():
    """The post-auth features carry <c hash='sha-1' node ver/> whose ver is the hash of
    exactly what disco#info answers."""
    w = World()
    (c,) = [el for el in features_element(w).elements() if el.uri == caps.CAPS]
    assert (c.name, c["hash"], c["node"]) == ("c", "sha-1", caps.NODE)
    assert c["ver"] == caps.verification_string(w.ctx.disco.server_identities, w.ctx.disco.server_features)


def test_ver_is_computed_once_and_again_only_on_change():
    """The hash is computed on first use, reused for every stream, and recomputed when
    a feature adds a disco fact later."""
    w = World()
    server_caps = caps.ServerCaps(w.ctx.disco)
    first = server_caps.ver
    for _ in range(50):
        assert server_caps.ver == first
    assert server_caps.computed == 1
    w.ctx.disco.server_features.add("urn:example:late")
    assert server_caps.ver != first
    assert server_caps.computed == 2


def test_server_does_not_claim_caps_optimisation():
    """The server's own features do not include the caps namespace (§8.4 optimisation
    is not done)."""
    w = World()
    assert caps.CAPS not in w.ctx.disco.server_features
