"""Logging in: STARTTLS and direct TLS, every SASL mechanism, failures and their limits."""

from __future__ import annotations

import ssl

import pytest

from tests.e2e.conftest import USERS
from tests.e2e.harness import (
    SASL_NS, TLS_NS, LoginFailed, RawClient, channel_binding_types, expect_stream_error,
    logged_in, login, mechanisms, run, sasl_condition, stream_error, to_text,
)

TRANSPORTS = ["starttls", "direct_tls"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_slixmpp_login(server, mech, transport):
    """slixmpp logs in with *mech* over *transport*, verifying the server's self-signed
    certificate as its only trust anchor, binds a resource and gets a ping answered."""
    jid = "judy@example.test/login"

    async def scenario():
        async with logged_in(server, jid, USERS["judy@example.test"], mech=mech,
                             direct_tls=transport == "direct_tls") as c:
            assert c.xmpp.plugin["feature_mechanisms"].mech.name == mech
            assert c.jid.full == jid
            await c.barrier()

    run(scenario())
    server.wait_log(rf"Authenticated judy@example\.test with {mech}\b")


def test_slixmpp_default_connect_to_the_starttls_port(server):
    """slixmpp with its default connect behaviour, given host and the STARTTLS port, first
    tries direct TLS there; our immediate <not-well-formed/> and close let it fall back to
    STARTTLS and log in within the login bound, every time (its ClientHello varies, so
    several logins; one that waited for a parser buffer to fill would hang)."""
    async def scenario():
        for n in range(4):
            async with logged_in(server, f"judy@example.test/default-{n}", USERS["judy@example.test"]) as c:
                assert c.xmpp.enable_direct_tls and c.xmpp.enable_starttls
                await c.barrier()

    run(scenario())
    server.wait_log(r"Stream error not-well-formed on -")


def test_slixmpp_login_non_ascii_password(server):
    """A password with non-ASCII letters, a symbol and spaces works through SASLprep/PRECIS
    with both SCRAM (hashed on both sides) and PLAIN (compared by the server)."""
    async def scenario():
        for mech in ("SCRAM-SHA-256", "PLAIN"):
            async with logged_in(server, "uma@example.test", USERS["uma@example.test"], mech=mech) as c:
                await c.barrier()

    run(scenario())


def test_starttls_features(server):
    """Before TLS the server offers only <starttls><required/></starttls>: no mechanisms;
    after TLS it offers SCRAM, SCRAM-PLUS and PLAIN and the channel-binding types (XEP-0440)."""
    with RawClient(server.port, server.cert_path()) as c:
        before = c.open()
        assert before.find(f"{{{TLS_NS}}}starttls/{{{TLS_NS}}}required") is not None, to_text(before)
        assert mechanisms(before) == [], to_text(before)
        after = c.starttls()
        assert c.tls_version in ("TLSv1.2", "TLSv1.3")
        offered = mechanisms(after)
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
            assert mech in offered, to_text(after)
        assert after.find(f"{{{TLS_NS}}}starttls") is None, to_text(after)
        assert "tls-exporter" in channel_binding_types(after), to_text(after)


def _plus_client(server, transport: str, max_tls=None) -> tuple[RawClient, list[str], list[str]]:
    c = RawClient(server.tls_port if transport == "direct_tls" else server.port, server.cert_path(),
                  direct_tls=transport == "direct_tls", use_pyopenssl=True, max_tls=max_tls)
    if transport == "direct_tls":
        features = c.open()
    else:
        c.open()
        features = c.starttls()
    return c, mechanisms(features), channel_binding_types(features)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
def test_scram_plus_tls_exporter(server, mech, transport):
    """SCRAM-*-PLUS with the tls-exporter channel binding (RFC 9266) over TLS 1.3 succeeds,
    and the server's final signature proves it knows the credentials.  slixmpp cannot do
    this (Python's ssl has no exporter), so the raw client computes SCRAM with pyOpenSSL."""
    c, offered, cb_types = _plus_client(server, transport)
    with c:
        assert c.tls_version == "TLSv1.3"
        assert mech in offered and "tls-exporter" in cb_types
        outcome = c.auth_scram("judy", USERS["judy@example.test"], mech, cb_type="tls-exporter")
        assert outcome.tag == f"{{{SASL_NS}}}success", to_text(outcome)
        c.open()
        assert c.bind("plus") == "judy@example.test/plus"
        assert c.ping_server().get("type") == "result"


@pytest.mark.parametrize("tls", ["TLSv1.3", "TLSv1.2"])
def test_scram_plus_tls_server_end_point(server, tls):
    """SCRAM-SHA-256-PLUS with tls-server-end-point (RFC 5929 §4.1: the hash of the
    server's certificate) succeeds over TLS 1.3 and over TLS 1.2."""
    max_tls = ssl.TLSVersion.TLSv1_2 if tls == "TLSv1.2" else None
    c, offered, cb_types = _plus_client(server, "starttls", max_tls=max_tls)
    with c:
        assert c.tls_version == tls
        assert "SCRAM-SHA-256-PLUS" in offered and "tls-server-end-point" in cb_types, cb_types
        outcome = c.auth_scram("judy", USERS["judy@example.test"], "SCRAM-SHA-256-PLUS",
                               cb_type="tls-server-end-point")
        assert outcome.tag == f"{{{SASL_NS}}}success", to_text(outcome)


def test_no_tls_exporter_below_tls13(server):
    """tls-exporter is only secure on TLS 1.3 (or 1.2 with extended master secret, RFC
    9266 §3): over TLS 1.2 the server does not offer it, and tls-unique not at all."""
    c, _, cb_types = _plus_client(server, "starttls", max_tls=ssl.TLSVersion.TLSv1_2)
    with c:
        assert c.tls_version == "TLSv1.2"
        assert "tls-exporter" not in cb_types and "tls-unique" not in cb_types, cb_types
        outcome = c.auth_scram("judy", USERS["judy@example.test"], "SCRAM-SHA-256-PLUS", cb_type="tls-exporter")
        assert sasl_condition(outcome) == "not-authorized", to_text(outcome)


def test_slixmpp_default_mechanism(server):
    """slixmpp left to choose picks SCRAM-SHA-256 (it cannot do -PLUS, see below) and,
    since the server advertised -PLUS, sends the GS2 flag 'n' — which the server accepts."""
    async def scenario():
        async with logged_in(server, "judy@example.test/default", USERS["judy@example.test"]) as c:
            assert c.xmpp.plugin["feature_mechanisms"].mech.name == "SCRAM-SHA-256"

    run(scenario())


def test_scram_plus_wrong_binding_is_refused(server):
    """A SCRAM-PLUS exchange whose channel-binding data is not this TLS connection's (a
    man in the middle relaying it) fails with not-authorized."""
    c, _, _ = _plus_client(server, "starttls")
    with c:
        outcome = c.auth_scram("judy", USERS["judy@example.test"], "SCRAM-SHA-256-PLUS",
                               cb_type="tls-exporter", cb_data=b"\x00" * 32)
        assert sasl_condition(outcome) == "not-authorized", to_text(outcome)


def test_scram_downgrade_flag_is_refused(server):
    """RFC 5802 §6: gs2 flag 'y' (client supports binding but thinks the server does not)
    while the server did advertise -PLUS means a downgrade; the server must fail it."""
    c, offered, _ = _plus_client(server, "starttls")
    with c:
        assert "SCRAM-SHA-256-PLUS" in offered
        outcome = c.auth_scram("judy", USERS["judy@example.test"], "SCRAM-SHA-256", gs2_flag="y")
        assert outcome.tag == f"{{{SASL_NS}}}failure", to_text(outcome)


def test_slixmpp_wrong_password(server):
    """slixmpp with a wrong password gets SASL <not-authorized/> and no session."""
    async def scenario():
        with pytest.raises(LoginFailed) as info:
            await login(server, "grace@example.test", "wrong", mech="SCRAM-SHA-256")
        assert info.value.conditions == ["not-authorized"], info.value.reason

    run(scenario())


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_wrong_password_then_retry(server, mech):
    """A wrong password gets <failure><not-authorized/></failure> and the stream stays open:
    a second attempt on the same connection with the right password succeeds and binds."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        if mech == "PLAIN":
            first = c.auth_plain("grace", "wrong")
            second = c.auth_plain("grace", USERS["grace@example.test"])
        else:
            first = c.auth_scram("grace", "wrong", mech)
            second = c.auth_scram("grace", USERS["grace@example.test"], mech)
        assert sasl_condition(first) == "not-authorized", to_text(first)
        assert second.tag == f"{{{SASL_NS}}}success", to_text(second)
        c.open()
        assert c.bind("retry") == "grace@example.test/retry"
    # The failure is logged for the operator with the peer's address, never the password.
    server.wait_log(r"Authentication failure \(not-authorized\) for example.test from 127.0.0.1")
    assert "wrong" not in server.log_text().replace("wrong-", "")


def test_unknown_user_looks_like_wrong_password(server):
    """An unknown account fails exactly like a wrong password (no account enumeration)."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        assert sasl_condition(c.auth_plain("nobody", "x")) == "not-authorized"
        assert sasl_condition(c.auth_scram("nobody", "x")) == "not-authorized"


def test_too_many_failures(server):
    """After auth.max_attempts (3) failed attempts the server closes the stream with
    <policy-violation/>, even if the next attempt would have been right."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        assert sasl_condition(c.auth_plain("grace", "wrong1")) == "not-authorized"
        assert sasl_condition(c.auth_plain("grace", "wrong2")) == "not-authorized"
        assert sasl_condition(c.auth_plain("grace", "wrong3")) == "not-authorized"
        got = expect_stream_error(c)
        assert stream_error(got) == "policy-violation", c._describe()
        assert got.closing_tag
    # The account itself is not locked.
    with RawClient(server.port, server.cert_path()) as c:
        assert c.login("grace", USERS["grace@example.test"], "after") == "grace@example.test/after"


def test_unoffered_mechanism(server):
    """A mechanism the server does not offer gets <invalid-mechanism/>, and the stream goes on."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        c.send(f"<auth xmlns='{SASL_NS}' mechanism='DIGEST-MD5'/>")
        assert sasl_condition(c.next_element()) == "invalid-mechanism"
        assert c.auth_plain("grace", USERS["grace@example.test"]).tag == f"{{{SASL_NS}}}success"
