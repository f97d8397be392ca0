"""Stanzas between users and to the server, and the 'from' rules of RFC 6120 §8.1.2."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import USERS
from tests.e2e.harness import (
    CLIENT, RawClient, expect_stream_error, logged_in, run, stanza_error, stream_error, to_text,
)


def test_messages_between_full_jids(server):
    """alice/a and bob/b exchange messages both ways; each arrives once, with the
    sender's full JID stamped by the server as 'from'."""
    async def scenario():
        async with logged_in(server, "alice@example.test/a", USERS["alice@example.test"]) as alice, \
                logged_in(server, "bob@example.test/b", USERS["bob@example.test"]) as bob:
            alice.xmpp.send_message(mto="bob@example.test/b", mbody="hello bob", mtype="chat")
            msg = await bob.next_message()
            assert (msg["body"], msg["type"], msg["from"].full) == ("hello bob", "chat", "alice@example.test/a")
            assert msg["to"].full == "bob@example.test/b"
            bob.xmpp.send_message(mto="alice@example.test/a", mbody="hello alice", mtype="chat")
            msg = await alice.next_message()
            assert (msg["body"], msg["from"].full) == ("hello alice", "bob@example.test/b")
            await alice.barrier()
            await bob.barrier()
            assert alice.messages.empty() and bob.messages.empty()

    run(scenario())


def test_message_across_hosted_domains(server):
    """A message from example.test to a user of the other hosted domain, other.test, is delivered."""
    async def scenario():
        async with logged_in(server, "alice@example.test/x", USERS["alice@example.test"]) as alice, \
                logged_in(server, "oscar@other.test/o", USERS["oscar@other.test"]) as oscar:
            alice.xmpp.send_message(mto="oscar@other.test/o", mbody="hi other domain")
            msg = await oscar.next_message()
            assert (msg["body"], msg["from"].full) == ("hi other domain", "alice@example.test/x")

    run(scenario())


def test_message_to_bare_jid(server):
    """A message to a bare JID reaches the user's available resource (RFC 6121 §8.5.2)."""
    async def scenario():
        async with logged_in(server, "alice@example.test/bare", USERS["alice@example.test"]) as alice, \
                logged_in(server, "bob@example.test/phone", USERS["bob@example.test"]) as bob:
            await bob.available()
            alice.xmpp.send_message(mto="bob@example.test", mbody="to your bare jid")
            msg = await bob.next_message()
            assert (msg["body"], msg["from"].full) == ("to your bare jid", "alice@example.test/bare")

    run(scenario())


def test_message_to_user_that_does_not_exist(server):
    """A message to a user who has no account is not silently dropped: the sender
    gets <service-unavailable/> (RFC 6121 §8.5.2.2.1).  (A user who exists but is
    offline gets the message stored: test_offline.py.)"""
    async def scenario():
        async with logged_in(server, "alice@example.test/none", USERS["alice@example.test"]) as alice:
            alice.xmpp.send_message(mto="nobody-here@example.test", mbody="anyone?")
            msg = await alice.next_message()
            assert msg["type"] == "error", msg
            assert msg["error"]["condition"] == "service-unavailable", msg

    run(scenario())


def test_iq_between_users(server):
    """An iq get to another user's full JID is delivered to that client, and its result
    comes back to the sender (slixmpp's XEP-0199 plugin answers pings)."""
    async def scenario():
        async with logged_in(server, "alice@example.test/iq", USERS["alice@example.test"]) as alice, \
                logged_in(server, "bob@example.test/iq", USERS["bob@example.test"]) as _bob:
            result = await alice.xmpp.plugin["xep_0199"].send_ping("bob@example.test/iq", timeout=10)
            assert result["type"] == "result"
            assert result["from"].full == "bob@example.test/iq"

    run(scenario())


def test_iq_to_offline_resource(server):
    """An iq to a full JID that is not online gets <service-unavailable/>."""
    async def scenario():
        from slixmpp.exceptions import IqError
        async with logged_in(server, "alice@example.test/iq2", USERS["alice@example.test"]) as alice:
            with pytest.raises(IqError) as info:
                await alice.xmpp.plugin["xep_0199"].send_ping("bob@example.test/gone", timeout=10)
            assert info.value.iq["error"]["condition"] == "service-unavailable"

    run(scenario())


def test_unhandled_iq_to_server(server):
    """An iq to the server in a namespace nothing handles is answered with
    <service-unavailable/>, never silence."""
    async def scenario():
        from slixmpp.exceptions import IqError
        async with logged_in(server, "alice@example.test/unk", USERS["alice@example.test"]) as alice:
            iq = alice.xmpp.make_iq_get(queryxmlns="urn:example:nobody-handles-this", ito="example.test")
            with pytest.raises(IqError) as info:
                await iq.send(timeout=10)
            assert info.value.iq["error"]["condition"] == "service-unavailable"
            assert info.value.iq["from"] == "example.test"

    run(scenario())


def test_ping_server(server):
    """XEP-0199: a ping to the server's domain gets an iq result from the domain."""
    async def scenario():
        async with logged_in(server, "alice@example.test/ping", USERS["alice@example.test"]) as alice:
            result = await alice.xmpp.plugin["xep_0199"].send_ping("example.test", timeout=10)
            assert result["type"] == "result"
            assert result["from"] == "example.test"

    run(scenario())


def _raw_login(server, user: str, resource: str) -> RawClient:
    c = RawClient(server.port, server.cert_path())
    c.login(user, USERS[f"{user}@example.test"], resource)
    return c


def test_forged_from_is_a_stream_error(server):
    """A client that sends a message with someone else's address as 'from' gets the
    <invalid-from/> stream error, and the recipient receives nothing of it."""
    async def scenario():
        async with logged_in(server, "frank@example.test/f", USERS["frank@example.test"]) as frank:
            with _raw_login(server, "eve", "forger") as eve:
                eve.send("<message from='mallory@example.test/x' to='frank@example.test/f' type='chat'>"
                         "<body>forged</body></message>")
                got = await asyncio.to_thread(expect_stream_error, eve)
                assert stream_error(got) == "invalid-from", eve._describe()
                assert got.closing_tag
            # Anything the server had routed from eve was written to frank before eve's
            # stream error; a marker sent now must be the first thing frank receives.
            async with logged_in(server, "alice@example.test/marker", USERS["alice@example.test"]) as alice:
                alice.xmpp.send_message(mto="frank@example.test/f", mbody="marker")
                msg = await frank.next_message()
                assert msg["body"] == "marker", f"frank received {msg}"

    run(scenario())


@pytest.mark.parametrize("claimed", ["eve@example.test", "eve@example.test/honest"])
def test_own_from_is_accepted(server, claimed):
    """A 'from' equal to the sender's own bare (or full) JID is accepted, and the
    message is delivered stamped with the sender's full JID."""
    async def scenario():
        async with logged_in(server, "frank@example.test/g", USERS["frank@example.test"]) as frank:
            with _raw_login(server, "eve", "honest") as eve:
                eve.send(f"<message from='{claimed}' to='frank@example.test/g'><body>mine</body></message>")
                msg = await frank.next_message()
                assert (msg["body"], msg["from"].full) == ("mine", "eve@example.test/honest")
                pong = await asyncio.to_thread(eve.ping_server)
                assert pong.get("type") == "result"

    run(scenario())


def test_stanza_to_malformed_jid(server):
    """A message to an address that is not a valid JID gets a <jid-malformed/> error back,
    and the session goes on."""
    with _raw_login(server, "eve", "badto") as eve:
        eve.send("<message id='m1' to='a@b@c'><body>x</body></message>")
        reply = eve.expect(f"{{{CLIENT}}}message")
        assert reply.get("type") == "error" and stanza_error(reply) == "jid-malformed", to_text(reply)
        assert eve.ping_server().get("type") == "result"
