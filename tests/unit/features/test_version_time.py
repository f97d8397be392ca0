"""XEP-0092 software version and XEP-0202 entity time (fedxmpp.features.version, .time)."""

from __future__ import annotations

import fedxmpp
from fedxmpp.features import time as entity_time
from tests.unit.features.world import NOW, World, payload


def children(el) -> dict[str, str]:
    return {c.name: str(c) for c in el.elements()}


def test_version_names_fedxmpp_without_os_by_default():
    """The server answers name and version; the OS only when configured."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", "<query xmlns='jabber:iq:version'/>", to="example.test")
    assert children(payload(reply)) == {"name": "fedxmpp", "version": fedxmpp.__version__}


def test_version_with_os_when_enabled():
    """[features] version_os = true adds a non-empty <os/>."""
    w = World(features={"version_os": True})
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", "<query xmlns='jabber:iq:version'/>", to="example.test")
    assert children(payload(reply))["os"].strip()


def test_entity_time_is_utc_from_the_clock():
    """<utc/> is the injected clock's time in XEP-0082 form (whole seconds); <tzo/> is +00:00."""
    w = World()
    w.clock.advance(0.25)
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", "<time xmlns='urn:xmpp:time'/>", to="example.test")
    assert children(payload(reply)) == {"tzo": "+00:00", "utc": "2023-11-14T22:13:20Z"}
    assert entity_time.utc_stamp(NOW) == "2023-11-14T22:13:20Z"


def test_version_and_time_of_a_user_are_not_answered_by_the_server():
    """Asked of a bare JID, these are the user's business: the server does not
    answer for them (<service-unavailable/>)."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", "<query xmlns='jabber:iq:version'/>", to="bob@example.test")
    assert reply["type"] == "error"
