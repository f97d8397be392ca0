"""XEP-0030 on the server and on accounts (fedxmpp.features.disco)."""

from __future__ import annotations

from fedxmpp.features import caps
from fedxmpp.xml import ns
from tests.unit.features.world import World, condition, payload

INFO = f"<query xmlns='{ns.DISCO_INFO}'/>"
ITEMS = f"<query xmlns='{ns.DISCO_ITEMS}'/>"

# What the modules in ENABLED implement (the IM core may add its own, e.g. XEP-0160).
FEATURES = {
    ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, "jabber:iq:version", "urn:xmpp:time", "jabber:iq:last",
    "vcard-temp", "jabber:iq:private", "urn:xmpp:blocking", "jabber:iq:register",
}


def features_of(reply) -> list[str]:
    return [f["var"] for f in payload(reply).elements() if f.name == "feature"]


def identities_of(reply) -> list[tuple[str, str]]:
    return [(i["category"], i["type"]) for i in payload(reply).elements() if i.name == "identity"]


def test_server_info_lists_exactly_the_registered_features():
    """disco#info on the domain: identity server/im and exactly the features declared
    in ctx.disco (by the IM core and the enabled modules), each once, sorted."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", INFO, to="example.test")
    assert reply["type"] == "result" and reply["from"] == "example.test"
    assert identities_of(reply) == [("server", "im")]
    assert features_of(reply) == sorted(w.ctx.disco.server_features)
    assert FEATURES <= set(features_of(reply))
    assert caps.CAPS not in features_of(reply)


def test_server_info_for_unknown_node_is_item_not_found():
    """A node the server does not know is <item-not-found/>."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", f"<query xmlns='{ns.DISCO_INFO}' node='urn:nothing'/>", to="example.test")
    assert condition(reply) == "item-not-found"


def test_server_info_for_the_caps_node_echoes_the_node():
    """XEP-0115: disco#info to 'node#ver' answers the server's info with that node."""
    w = World()
    a = w.login("alice@example.test/a")
    ver = caps.verification_string(w.ctx.disco.server_identities, w.ctx.disco.server_features)
    node = f"{caps.NODE}#{ver}"
    reply = w.iq(a, "get", f"<query xmlns='{ns.DISCO_INFO}' node='{node}'/>", to="example.test")
    assert payload(reply)["node"] == node
    assert set(features_of(reply)) == w.ctx.disco.server_features
    stale = w.iq(a, "get", f"<query xmlns='{ns.DISCO_INFO}' node='{caps.NODE}#old'/>", to="example.test", id="q2")
    assert condition(stale) == "item-not-found"


def test_server_items_come_from_the_providers():
    """disco#items on the domain lists what the item providers return, once each."""
    w = World()
    w.ctx.disco.item_providers.append(lambda: [("irc.example.test", "IRC gateway"), ("muc.example.test", None)])
    w.ctx.disco.item_providers.append(lambda: [("irc.example.test", "again")])
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", ITEMS, to="example.test")
    items = [(i["jid"], i.getAttribute("name")) for i in payload(reply).elements()]
    assert items == [("irc.example.test", "IRC gateway"), ("muc.example.test", None)]


def test_server_items_without_providers_is_empty_result():
    """No items: an empty result, never an error (XEP-0030 §7)."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", ITEMS, to="example.test")
    assert reply["type"] == "result" and list(payload(reply).elements()) == []


def test_account_info_for_the_user_themself():
    """A user's own bare JID (no 'to'): account/registered and the account features."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", INFO)
    assert reply["from"] == "alice@example.test"
    assert identities_of(reply) == sorted((i.category, i.type) for i in w.ctx.disco.account_identities)
    assert ("account", "registered") in identities_of(reply)
    assert set(features_of(reply)) == w.ctx.disco.account_features
    assert {ns.DISCO_INFO, "vcard-temp", "jabber:iq:last"} <= set(features_of(reply))


def test_account_info_for_a_stranger_is_service_unavailable():
    """XEP-0030 §8: no presence subscription, no answer (<service-unavailable/>), the
    same as for an account that does not exist."""
    w = World()
    w.account("bob@example.test")
    a = w.login("alice@example.test/a")
    assert condition(w.iq(a, "get", INFO, to="bob@example.test")) == "service-unavailable"
    assert condition(w.iq(a, "get", INFO, to="nobody@example.test", id="q2")) == "service-unavailable"


def test_account_info_depends_on_the_subscription_direction():
    """Only a contact the user lets see their presence ('from' or 'both') is answered;
    a 'to' subscription (the user sees the contact) is not enough."""
    w = World()
    a = w.login("alice@example.test/a")
    w.subscribe("bob@example.test", "alice@example.test", "to")
    assert condition(w.iq(a, "get", INFO, to="bob@example.test")) == "service-unavailable"
    w.subscribe("bob@example.test", "alice@example.test", "from")
    reply = w.iq(a, "get", INFO, to="bob@example.test", id="q2")
    assert reply["type"] == "result" and ("account", "registered") in identities_of(reply)


def test_account_items_list_available_resources_to_authorised_only():
    """disco#items on a bare JID: the available resources for the user and their
    'both' contacts; an empty result for strangers (XEP-0030 §8)."""
    w = World()
    w.login("bob@example.test/phone")
    w.login("bob@example.test/hidden", available=False)
    b = w.login("bob@example.test/desk")
    a = w.login("alice@example.test/a")
    stranger = w.login("mallory@example.test/m")
    w.subscribe("bob@example.test", "alice@example.test", "both")
    own = w.iq(b, "get", ITEMS)
    assert [i["jid"] for i in payload(own).elements()] == ["bob@example.test/desk", "bob@example.test/phone"]
    friend = w.iq(a, "get", ITEMS, to="bob@example.test")
    assert len(list(payload(friend).elements())) == 2
    other = w.iq(stranger, "get", ITEMS, to="bob@example.test")
    assert other["type"] == "result" and list(payload(other).elements()) == []


def test_account_disco_without_storage_answers_only_the_user():
    """Before storage is open only the user themself is authorised (no roster to ask)."""
    w = World(storage=False)
    a = w.login("alice@example.test/a")
    assert w.iq(a, "get", INFO)["type"] == "result"
    assert condition(w.iq(a, "get", INFO, to="bob@example.test", id="q2")) == "service-unavailable"
