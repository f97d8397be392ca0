"""Hostile and broken input: each case on its own connection ends as RFC 6120 says, and
neither new logins nor sessions that are already connected are affected."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

import pytest

from tests.e2e.conftest import MAX_DEPTH, MAX_STANZA_SIZE, USERS
from tests.e2e.harness import (
    CLIENT, SASL_NS, STREAMS, RawClient, expect_stream_error, logged_in, run, sasl_condition, stream_error,
    tls_client_hello, to_text,
)

SENTINEL = "heidi@example.test/sentinel"

BILLION_LAUGHS = (
    "<?xml version='1.0'?>"
    "<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + "".join(f"<!ENTITY lol{i} '{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}'>" for i in range(1, 10))
    + "]>"
)


@pytest.fixture(scope="module")
def sentinel(server):
    """A session connected before the bad input and kept across all of it."""
    c = RawClient(server.port, server.cert_path())
    assert c.login("heidi", USERS["heidi@example.test"], "sentinel") == SENTINEL
    yield c
    c.close()


def _plain(server) -> RawClient:
    return RawClient(server.port, server.cert_path())


def _after_tls(server) -> RawClient:
    c = _plain(server)
    c.open()
    c.starttls()
    return c


def _tls_before_restart(server) -> RawClient:
    c = _plain(server)
    c.open()
    c.starttls(restart=False)
    return c


def _bound(server) -> RawClient:
    c = _plain(server)
    c.login("trent", USERS["trent@example.test"], "bad-" + uuid.uuid4().hex[:8])
    return c


def _to_sentinel(payload: str) -> str:
    return f"<message to='{SENTINEL}' type='chat'>{payload}</message>"


@dataclass
class Case:
    """Open a connection, send something bad; the stream error we must get."""

    connect: Callable[[object], RawClient]
    data: str | Callable[[RawClient], str]
    expected: frozenset[str]


CASES: dict[str, Case] = {
    "doctype-in-prolog": Case(_plain, lambda c: "<?xml version='1.0'?><!DOCTYPE stream:stream>" + c.header(prolog=""),
                              frozenset({"restricted-xml"})),
    "billion-laughs-after-starttls": Case(
        _tls_before_restart, lambda c: BILLION_LAUGHS + c.header(prolog="") + _to_sentinel("<body>&lol9;</body>"),
        frozenset({"restricted-xml"})),
    "processing-instruction-in-stanza": Case(_bound, _to_sentinel("<?evil data?><body>pi</body>"),
                                             frozenset({"restricted-xml"})),
    "processing-instruction-top-level": Case(_bound, "<?evil data?>", frozenset({"restricted-xml"})),
    "comment-in-stanza": Case(_bound, _to_sentinel("<!-- hidden --><body>comment</body>"),
                              frozenset({"restricted-xml"})),
    "undefined-entity": Case(_bound, _to_sentinel("<body>&nope;</body>"),
                             frozenset({"restricted-xml", "not-well-formed"})),
    "malformed-xml": Case(_bound, _to_sentinel("<body>x</bodyy>"), frozenset({"not-well-formed"})),
    "malformed-before-tls": Case(_plain, lambda c: c.header() + "<a><b></a>", frozenset({"not-well-formed"})),
    "oversized-stanza": Case(_bound, _to_sentinel("<body>" + "x" * (MAX_STANZA_SIZE + 100) + "</body>"),
                             frozenset({"policy-violation"})),
    "oversized-before-auth": Case(_after_tls, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                                  + "A" * (MAX_STANZA_SIZE + 100) + "</auth>", frozenset({"policy-violation"})),
    "over-deep-nesting": Case(_bound, _to_sentinel("<x xmlns='urn:example:deep'>" + "<x>" * (MAX_DEPTH + 10)
                                                   + "</x>" * (MAX_DEPTH + 11)), frozenset({"policy-violation"})),
    "unknown-stream-namespace": Case(_plain, lambda c: c.header(stream_ns="urn:example:not-streams"),
                                     frozenset({"invalid-namespace"})),
    "server-namespace-on-c2s": Case(_plain, lambda c: c.header(default_ns="jabber:server"),
                                    frozenset({"invalid-namespace"})),
    "unknown-to-domain": Case(_plain, lambda c: c.header(to="unknown.test"), frozenset({"host-unknown"})),
    "no-to-domain": Case(_plain, lambda c: c.header(to=""), frozenset({"host-unknown"})),
    "old-version": Case(_plain, lambda c: c.header(version="0.9"), frozenset({"unsupported-version"})),
    # RFC 6120 §5.3.1 lets the server choose; both are stream errors that close the stream.
    "stanza-before-tls": Case(_plain, lambda c: c.header() + _to_sentinel("<body>cleartext</body>"),
                              frozenset({"not-authorized", "policy-violation"})),
    "stanza-before-auth": Case(_after_tls, _to_sentinel("<body>no auth</body>"), frozenset({"not-authorized"})),
    "http-request-instead-of-header": Case(_plain, "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
                                           frozenset({"not-well-formed"})),
}


def _check_still_serving(server, sentinel: RawClient) -> None:
    """A fresh slixmpp login works, and the sentinel receives what it sends; that is the
    first thing the sentinel receives (so nothing of the bad input reached it)."""
    marker = "marker-" + uuid.uuid4().hex

    async def scenario():
        async with logged_in(server, "ivan@example.test/check", USERS["ivan@example.test"]) as ivan:
            ivan.xmpp.send_message(mto=SENTINEL, mbody=marker, mtype="chat")
            await ivan.barrier()

    run(scenario())
    msg = sentinel.expect(f"{{{CLIENT}}}message")
    body = msg.find(f"{{{CLIENT}}}body")
    assert body is not None and body.text == marker, f"sentinel got {to_text(msg)}"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(server, sentinel, name):
    """Each bad input gets its stream error (then </stream:stream> and a closed socket),
    and the server keeps serving everyone else."""
    case = CASES[name]
    c = case.connect(server)
    with c:
        c.send(case.data(c) if callable(case.data) else case.data)
        got = expect_stream_error(c)
        assert stream_error(got) in case.expected, f"{name}: {c._describe()}"
        assert got.closing_tag, f"{name}: no </stream:stream> after the stream error"
    _check_still_serving(server, sentinel)


def test_tls_client_hello_on_starttls_port(server, sentinel):
    """A client that tries direct TLS first (slixmpp >= 1.10 does, on whatever port it is
    given) sends a ClientHello to the STARTTLS port.  RFC 6120 §4.9.1.1: it gets our stream
    header, <not-well-formed/>, </stream:stream> and the TCP close on that read, not after
    a timeout, so that it can fall back to STARTTLS at once."""
    with _plain(server) as c:
        c.send(tls_client_hello())
        got = c.read_until_closed(timeout=5.0)
        assert got.header is not None and got.header.tag == f"{{{STREAMS}}}stream", c._describe()
        assert stream_error(got) == "not-well-formed", c._describe()
        assert got.closing_tag and got.eof, c._describe()
    _check_still_serving(server, sentinel)


def test_auth_before_tls(server, sentinel):
    """<auth/> before STARTTLS gets <failure><encryption-required/></failure>; the stream
    stays open, and STARTTLS and login then work on the same connection."""
    with _plain(server) as c:
        c.open()
        c.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>AHRyZW50AHRyZW50LXNlY3JldA==</auth>")
        failure = c.next_element()
        assert sasl_condition(failure) == "encryption-required", to_text(failure)
        c.starttls()
        assert c.auth_plain("trent", USERS["trent@example.test"]).tag == f"{{{SASL_NS}}}success"
    _check_still_serving(server, sentinel)


@pytest.mark.parametrize("data", ["!!!not-base64!!!", "AHRyZW50AHRyZW50LXNlY3JldA", "AHRy ZW50"])
def test_bad_base64_in_auth(server, sentinel, data):
    """Invalid base64 in <auth/> (bad characters, missing padding, embedded space) gets
    <failure><incorrect-encoding/></failure>, and a correct attempt then succeeds."""
    with _after_tls(server) as c:
        c.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{data}</auth>")
        failure = c.next_element()
        assert sasl_condition(failure) == "incorrect-encoding", to_text(failure)
        assert c.auth_plain("trent", USERS["trent@example.test"]).tag == f"{{{SASL_NS}}}success"
    _check_still_serving(server, sentinel)
