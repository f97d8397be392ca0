"""XEP-0199 ping (fedxmpp.features.ping): the server's domain, and the account's own
bare JID, which is also where a ping without 'to' goes (RFC 6120 §10.3.3)."""

from __future__ import annotations

import pytest

from tests.unit.features.world import World, condition, payload

PING = "<ping xmlns='urn:xmpp:ping'/>"


@pytest.mark.parametrize("to", ["example.test", None, "alice@example.test"],
                         ids=["server", "no-to", "own-bare-jid"])
def test_ping_is_answered_with_an_empty_result(to):
    """A ping to the server, without 'to' (libstrophe's keepalive) or to the user's own
    bare JID is answered with an empty result, which a client takes as 'server ping
    supported' and keeps its keepalive on."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", PING, to=to)
    assert reply["type"] == "result", reply.toXml()
    assert payload(reply) is None
    assert reply["to"] == "alice@example.test/a"
    assert reply["from"] == (to or "alice@example.test")


def test_ping_to_someone_elses_bare_jid_is_not_answered_for_them():
    """The server does not answer on another user's behalf: <service-unavailable/>."""
    w = World()
    w.account("alice@example.test")
    w.account("bob@example.test")
    a = w.login("alice@example.test/a")
    w.login("bob@example.test/b")
    reply = w.iq(a, "get", PING, to="bob@example.test")
    assert condition(reply) == "service-unavailable"
