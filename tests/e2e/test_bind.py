"""Resource binding (RFC 6120 §7): chosen, generated, and conflicting resources."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import USERS
from tests.e2e.harness import BIND_NS, CLIENT, RawClient, logged_in, login, run, to_text


def test_client_chosen_resource(server):
    """The resource the client asks for is the one bound and echoed in the bind result."""
    async def scenario():
        async with logged_in(server, "carol@example.test/laptop", USERS["carol@example.test"]) as c:
            assert c.jid.full == "carol@example.test/laptop"

    run(scenario())


def test_server_generated_resource(server):
    """A bind without a resource gets a server-generated one, different per session."""
    async def scenario():
        async with logged_in(server, "carol@example.test", USERS["carol@example.test"]) as a, \
                logged_in(server, "carol@example.test", USERS["carol@example.test"]) as b:
            assert a.jid.bare == b.jid.bare == "carol@example.test"
            assert a.jid.resource and b.jid.resource
            assert a.jid.resource != b.jid.resource

    run(scenario())


def test_invalid_resource(server):
    """A resource that is not a valid resourcepart (over 1023 bytes, RFC 7622 §3.4) gets an
    iq error, and the client may bind again."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        c.auth_plain("carol", USERS["carol@example.test"])
        c.open()
        c.send(f"<iq type='set' id='b1'><bind xmlns='{BIND_NS}'><resource>{'r' * 1100}</resource></bind></iq>")
        reply = c.expect(f"{{{CLIENT}}}iq")
        assert reply.get("type") == "error" and reply.find(f"{{{CLIENT}}}error") is not None, to_text(reply)
        assert c.bind("fine") == "carol@example.test/fine"


def test_resource_conflict(server):
    """A second login with the same resource takes it over: the first session gets a
    <conflict/> stream error and is closed, the second works and receives the stanzas."""
    async def scenario():
        first = await login(server, "dave@example.test/desk", USERS["dave@example.test"])
        try:
            async with logged_in(server, "dave@example.test/desk", USERS["dave@example.test"]) as second:
                error = await asyncio.wait_for(first.stream_errors.get(), 10)
                assert error["condition"] == "conflict"
                await asyncio.wait_for(first.disconnected.wait(), 10)
                assert second.jid.full == "dave@example.test/desk"
                # The resource now belongs to the second session.
                async with logged_in(server, "alice@example.test/bind-test", USERS["alice@example.test"]) as alice:
                    alice.xmpp.send_message(mto="dave@example.test/desk", mbody="to the new session")
                    msg = await second.next_message()
                    assert msg["body"] == "to the new session"
                    assert first.messages.empty()
        finally:
            await first.close()

    run(scenario())


def test_feature_lists_at_each_stage(server):
    """STARTTLS is offered as required before TLS, with no mechanisms; after TLS the
    mechanisms come with the XEP-0440 channel-binding types; after SASL, bind and the
    optional RFC 3921 session are offered."""
    from tests.e2e.harness import SASL_CB_NS, SASL_NS, STREAMS, TLS_NS

    with RawClient(server.port, server.cert_path()) as c:
        features = c.open()
        assert features.find(f"{{{TLS_NS}}}starttls/{{{TLS_NS}}}required") is not None
        assert features.find(f"{{{SASL_NS}}}mechanisms") is None
        features = c.starttls()
        names = [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")]
        assert names[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] and "PLAIN" in names
        kinds = {cb.get("type") for cb in features.iter(f"{{{SASL_CB_NS}}}channel-binding")}
        assert kinds >= {"tls-exporter", "tls-server-end-point"}
        outcome = c.auth_plain("alice", USERS["alice@example.test"])
        assert outcome.tag == f"{{{SASL_NS}}}success", to_text(outcome)
        features = c.open()
        assert features.tag == f"{{{STREAMS}}}features"
        assert features.find(f"{{{BIND_NS}}}bind") is not None
        session = features.find("{urn:ietf:params:xml:ns:xmpp-session}session")
        assert session is not None and session.find("{urn:ietf:params:xml:ns:xmpp-session}optional") is not None


def test_legacy_session_establishment(server):
    """Old clients (RFC 3921) send a session iq after binding; it is answered with an
    empty result and the session then works normally."""
    with RawClient(server.port, server.cert_path()) as c:
        jid = c.login("alice", USERS["alice@example.test"], resource="legacy")
        c.send("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        reply = c.expect(f"{{{CLIENT}}}iq")
        assert (reply.get("id"), reply.get("type")) == ("sess1", "result"), to_text(reply)
        assert reply.get("to") == jid
        assert c.ping_server().get("type") == "result"
