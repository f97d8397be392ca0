"""XEP-0012 last activity (fedxmpp.features.last)."""

from __future__ import annotations

import json

from tests.unit.features.world import World, condition, payload, xml

LAST = "<query xmlns='jabber:iq:last'/>"


def test_server_uptime():
    """Asked of the server: seconds since the feature registered (server start)."""
    w = World()
    w.clock.advance(3600)
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", LAST, to="example.test")
    assert payload(reply)["seconds"] == "3600" and str(payload(reply)) == ""


def log_off(w: World, session, status: str | None = None) -> None:
    """The client sends unavailable presence (with a status) and the stream ends."""
    el = xml("<presence type='unavailable'/>")
    if status:
        el.addElement("status", content=status)
    w.client_send(session, el)
    w.logout(session)


def test_offline_user_last_logout_with_status():
    """A contact allowed to see bob's presence learns how long ago bob's last session
    ended and the status he left with."""
    w = World()
    w.account("bob@example.test")
    w.subscribe("bob@example.test", "alice@example.test", "both")
    b = w.login("bob@example.test/phone")
    log_off(w, b, "Heading Home")
    w.clock.advance(903)
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", LAST, to="bob@example.test")
    assert (payload(reply)["seconds"], str(payload(reply))) == ("903", "Heading Home")


def test_logout_time_is_stored_only_when_the_last_session_ends():
    """With another resource still online nothing is stored; the record is written
    when the last one goes."""
    w = World()
    w.account("bob@example.test")
    b1, b2 = w.login("bob@example.test/one"), w.login("bob@example.test/two")
    log_off(w, b1, "first")
    assert w.storage.keyval.values == {}
    w.clock.advance(10)
    log_off(w, b2)
    record = json.loads(w.storage.keyval.values[("bob", "example.test", "last", "")])
    assert record == {"time": w.clock.seconds(), "status": ""}


def test_status_of_an_earlier_unavailable_presence_is_not_kept():
    """Unavailable, available again, then the connection drops: no stale status."""
    w = World()
    w.account("bob@example.test")
    b = w.login("bob@example.test/phone")
    w.client_send(b, xml("<presence type='unavailable'><status>brb</status></presence>"))
    w.client_send(b, xml("<presence/>"))
    w.logout(b)
    record = json.loads(w.storage.keyval.values[("bob", "example.test", "last", "")])
    assert record["status"] == ""


def test_online_user_is_zero_seconds():
    """With an available resource the answer is seconds='0'."""
    w = World()
    w.account("bob@example.test")
    w.subscribe("bob@example.test", "alice@example.test", "from")
    w.login("bob@example.test/phone")
    a = w.login("alice@example.test/a")
    assert payload(w.iq(a, "get", LAST, to="bob@example.test"))["seconds"] == "0"


def test_unauthorised_requester_is_forbidden():
    """Without a subscription to bob's presence, <forbidden/> (XEP-0012 §3)."""
    w = World()
    w.account("bob@example.test")
    w.subscribe("bob@example.test", "alice@example.test", "to")
    b = w.login("bob@example.test/phone")
    log_off(w, b)
    a = w.login("alice@example.test/a")
    assert condition(w.iq(a, "get", LAST, to="bob@example.test")) == "forbidden"


def test_user_asks_own_last_activity():
    """The user themself is always allowed (here: never logged out -> item-not-found)."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a", available=False)
    assert condition(w.iq(a, "get", LAST)) == "item-not-found"


def test_no_such_account_is_service_unavailable():
    """RFC 6121 §8.5.1: an iq to an address without an account."""
    w = World()
    a = w.login("alice@example.test/a")
    assert condition(w.iq(a, "get", LAST, to="nobody@example.test")) == "service-unavailable"
