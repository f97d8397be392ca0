"""XEP-0054 vcard-temp (fedxmpp.features.vcard)."""

from __future__ import annotations

from tests.unit.features.world import World, condition, payload

GET = "<vCard xmlns='vcard-temp'/>"
CARD = "<vCard xmlns='vcard-temp'><FN>Alice A.</FN><NICKNAME>al</NICKNAME></vCard>"


def fields(reply) -> dict[str, str]:
    return {c.name: str(c) for c in payload(reply).elements()}


def test_set_then_get_own_and_others_read_it():
    """A user stores a vCard; they and anyone else read it back from the bare JID."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    assert w.iq(a, "set", CARD)["type"] == "result"
    assert fields(w.iq(a, "get", GET, id="q2")) == {"FN": "Alice A.", "NICKNAME": "al"}
    b = w.login("bob@example.test/b")
    reply = w.iq(b, "get", GET, to="alice@example.test")
    assert reply["from"] == "alice@example.test"
    assert payload(reply).uri == "vcard-temp" and fields(reply)["FN"] == "Alice A."


def test_own_vcard_empty_when_none_others_item_not_found():
    """No vCard: the owner gets an empty <vCard/>, others <item-not-found/> (the same
    whether or not the account exists)."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    own = w.iq(a, "get", GET)
    assert own["type"] == "result" and payload(own).name == "vCard" and fields(own) == {}
    b = w.login("bob@example.test/b")
    assert condition(w.iq(b, "get", GET, to="alice@example.test")) == "item-not-found"
    assert condition(w.iq(b, "get", GET, to="ghost@example.test", id="q2")) == "item-not-found"


def test_setting_someone_elses_vcard_is_forbidden():
    """Only the owner may change a vCard."""
    w = World()
    w.account("alice@example.test")
    b = w.login("bob@example.test/b")
    assert condition(w.iq(b, "set", CARD, to="alice@example.test")) == "forbidden"
    assert w.storage.keyval.values == {}


def test_size_limit():
    """A vCard over [features] vcard_max_size bytes is refused and not stored."""
    w = World(features={"vcard_max_size": 1024})
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    big = "<vCard xmlns='vcard-temp'><DESC>" + "x" * 1100 + "</DESC></vCard>"
    assert condition(w.iq(a, "set", big)) == "policy-violation"
    assert w.storage.keyval.values == {}
    assert w.iq(a, "set", CARD, id="q2")["type"] == "result"


def test_empty_vcard_deletes():
    """Setting an empty <vCard/> removes the stored one."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    w.iq(a, "set", CARD)
    w.iq(a, "set", GET, id="q2")
    assert w.storage.keyval.values == {}
