"""XEP-0049 private XML storage (fedxmpp.features.private)."""

from __future__ import annotations

import pytest

from tests.unit.features.world import World, condition, payload

PREFS = "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><nick>Hamlet</nick></exodus></query>"
GET_PREFS = "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>"


def test_store_and_retrieve():
    """What a user stores under a namespace comes back whole."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    assert w.iq(a, "set", PREFS)["type"] == "result"
    (el,) = payload(w.iq(a, "get", GET_PREFS, id="q2")).elements()
    assert (el.uri, el.name, str(next(el.elements()))) == ("exodus:prefs", "exodus", "Hamlet")


def test_nothing_stored_returns_the_empty_element():
    """A namespace with nothing stored comes back as it was asked for."""
    w = World()
    a = w.login("alice@example.test/a")
    (el,) = payload(w.iq(a, "get", GET_PREFS)).elements()
    assert (el.uri, el.name, list(el.elements())) == ("exodus:prefs", "exodus", [])


def test_elements_are_kept_per_namespace_and_name():
    """Storing one namespace leaves another alone; storing again replaces."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    w.iq(a, "set", "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>")
    w.iq(a, "set", PREFS, id="q2")
    w.iq(a, "set", PREFS.replace("Hamlet", "Ophelia"), id="q3")
    keys = sorted(k for (_, _, s, k) in w.storage.keyval.values if s == "private")
    assert keys == ["{exodus:prefs}exodus", "{storage:bookmarks}storage"]
    (el,) = payload(w.iq(a, "get", GET_PREFS, id="q4")).elements()
    assert str(next(el.elements())) == "Ophelia"


@pytest.mark.parametrize("namespace", ["jabber:client", "jabber:server", "jabber:iq:private"])
def test_reserved_namespaces_are_not_acceptable(namespace):
    """XEP-0049: these namespaces cannot be stored or read."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "set", f"<query xmlns='jabber:iq:private'><x xmlns='{namespace}'/></query>")
    assert condition(reply) == "not-acceptable"
    assert w.storage.keyval.values == {}


def test_query_without_element_is_not_acceptable():
    """A get or set naming nothing is refused (§2.3)."""
    w = World()
    a = w.login("alice@example.test/a")
    assert condition(w.iq(a, "get", "<query xmlns='jabber:iq:private'/>")) == "not-acceptable"


def test_another_users_data_is_forbidden():
    """Private XML is never read or written for another user."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    w.iq(a, "set", PREFS)
    b = w.login("bob@example.test/b")
    assert condition(w.iq(b, "get", GET_PREFS, to="alice@example.test")) == "forbidden"
    assert condition(w.iq(b, "set", PREFS, to="alice@example.test", id="q2")) == "forbidden"


def test_size_and_count_limits():
    """An element over private_max_size, or one more than private_max_items, is refused."""
    w = World(features={"private_max_size": 1024, "private_max_items": 2})
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    big = "<query xmlns='jabber:iq:private'><b xmlns='urn:big'>" + "x" * 1100 + "</b></query>"
    assert condition(w.iq(a, "set", big)) == "policy-violation"
    for i in range(2):
        assert w.iq(a, "set", f"<query xmlns='jabber:iq:private'><n xmlns='urn:n{i}'/></query>",
                    id=f"n{i}")["type"] == "result"
    third = w.iq(a, "set", "<query xmlns='jabber:iq:private'><n xmlns='urn:n2'/></query>", id="n2")
    assert condition(third) == "policy-violation"
    again = w.iq(a, "set", "<query xmlns='jabber:iq:private'><n xmlns='urn:n0'>v</n></query>", id="n0b")
    assert again["type"] == "result"
