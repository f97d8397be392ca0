"""The server side of a stream on Twisted's fakes: headers, errors, timers, back-pressure."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StreamError

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>")


@dataclass
class Limits:
    max_stanza_size: int = 10000
    max_depth: int = 16
    max_send_buffer: int = 20000


class RecordingHandler:
    def __init__(self) -> None:
        self.elements: list[domish.Element] = []
        self.closed = 0

    def stream_opened(self, stream, root):
        if root.getAttribute("to") != "example.test":
            raise StreamError("host-unknown")
        return "example.test"

    def features(self, stream):
        return domish.Element((ns.STREAMS, "features"))

    def element_received(self, stream, element):
        self.elements.append(element)

    def stream_closed(self, stream, reason):
        self.closed += 1


def connect(**kw):
    clock, handler, transport = Clock(), RecordingHandler(), StringTransport()
    stream = ServerStream(handler, content_ns=ns.CLIENT, limits=Limits(), clock=clock,
                          negotiation_timeout=kw.pop("negotiation_timeout", 30), **kw)
    stream.makeConnection(transport)
    return stream, handler, transport, clock


def sent(transport: StringTransport) -> str:
    return transport.value().decode()


def test_header_answered_with_id_from_and_features():
    """Our header carries from, a fresh id, version 1.0 and xml:lang, then features."""
    stream, handler, transport, _ = connect()
    stream.dataReceived(HEADER)
    out = sent(transport)
    assert "from='example.test'" in out and f"id='{stream.stream_id}'" in out
    assert "version='1.0'" in out and "xml:lang='en'" in out
    assert out.endswith("<stream:features/>")


def test_stanzas_reach_the_handler():
    """Complete top-level elements are handed over, whatever the read boundaries."""
    stream, handler, transport, _ = connect()
    data = HEADER + b"<message to='a@example.test'><body>hi</body></message><iq type='get' id='1'/>"
    for i in range(0, len(data), 7):
        stream.dataReceived(data[i:i + 7])
    assert [e.name for e in handler.elements] == ["message", "iq"]


def test_unknown_host_gets_header_then_error_then_close():
    """RFC 6120 §4.9.1.2: an error before our header is preceded by one; the stream closes."""
    stream, handler, transport, _ = connect()
    stream.dataReceived(HEADER.replace(b"example.test", b"elsewhere.test"))
    out = sent(transport)
    assert out.startswith("<?xml version='1.0'?><stream:stream ")
    assert "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith("</stream:stream>")
    assert transport.disconnecting


# A TLS ClientHello's first bytes, without a '>': a client trying direct TLS on the STARTTLS port.
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(0x80, 0xc0))


@pytest.mark.parametrize("first", [CLIENT_HELLO, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"])
def test_not_a_stream_header_is_answered_and_closed_at_once(first):
    """RFC 6120 §4.9.1.1: bytes that cannot begin a stream get our header, <not-well-formed/>
    and our closing tag on the read that brought them, and the TCP connection is closed:
    a client that tries direct TLS first then falls back to STARTTLS without waiting."""
    stream, handler, transport, _ = connect()
    stream.dataReceived(first)
    out = sent(transport)
    assert out.startswith("<?xml version='1.0'?><stream:stream ")
    assert "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith("</stream:stream>")
    assert transport.disconnecting
    assert stream.close_reason == "not-well-formed"


def test_wrong_namespace_and_version():
    """A non-client default namespace is invalid-namespace; a pre-1.0 stream unsupported-version."""
    stream, _, transport, _ = connect()
    stream.dataReceived(HEADER.replace(b"jabber:client", b"jabber:server"))
    assert "<invalid-namespace " in sent(transport)
    stream, _, transport, _ = connect()
    stream.dataReceived(HEADER.replace(b"to='example.test' version='1.0'", b"to='example.test'"))
    assert "<unsupported-version " in sent(transport)


def test_restricted_xml_is_a_stream_error():
    """A DOCTYPE in the stream is answered with <restricted-xml/> and the stream closes."""
    stream, _, transport, _ = connect()
    stream.dataReceived(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER)
    assert "<restricted-xml " in sent(transport)
    assert transport.disconnecting


def test_negotiation_timeout():
    """A connection that does not finish negotiating gets <connection-timeout/>."""
    stream, _, transport, clock = connect(negotiation_timeout=5)
    stream.dataReceived(HEADER)
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert "<connection-timeout " in sent(transport)
    assert transport.disconnecting


def test_negotiated_stream_has_no_negotiation_timeout_but_an_idle_one():
    """After negotiated() only silence longer than idle_timeout closes the stream."""
    stream, _, transport, clock = connect(negotiation_timeout=5, idle_timeout=20)
    stream.dataReceived(HEADER)
    stream.negotiated()
    clock.advance(15)
    stream.dataReceived(b" ")
    clock.advance(15)
    assert not transport.disconnecting
    clock.advance(6)
    assert "<connection-timeout " in sent(transport)


def test_whitespace_keepalive_after_quiet_interval():
    """A quiet stream gets a single space after keepalive_interval."""
    stream, _, transport, clock = connect(keepalive_interval=10)
    stream.dataReceived(HEADER)
    stream.negotiated()
    transport.clear()
    clock.advance(10.1)
    assert transport.value() == b" "


def test_peer_that_stops_reading_is_disconnected():
    """When the transport pauses us and more than max_send_buffer piles up, the
    connection is aborted instead of growing memory without bound."""
    stream, _, transport, _ = connect()
    stream.dataReceived(HEADER)
    stream.pauseProducing()
    assert transport.producerState == "paused"  # we stop reading from it too
    for _ in range(30):
        stream.write("x" * 1000)
    assert stream.closed


def test_close_tag_from_peer_closes_cleanly():
    """The peer's </stream:stream> is answered with ours and the TCP close."""
    stream, handler, transport, _ = connect()
    stream.dataReceived(HEADER + b"</stream:stream>")
    assert sent(transport).endswith("</stream:stream>")
    assert transport.disconnecting
    stream.connectionLost(None)
    assert handler.closed == 1


def test_data_pipelined_after_starttls_is_discarded_on_restart():
    """STARTTLS command injection: bytes after <starttls/> in the same plaintext read
    must not reach the handler once the stream restarts."""
    stream, handler, transport, _ = connect()

    def element_received(s, element):
        handler.elements.append(element)
        if element.name == "starttls":
            s.restart()

    handler.element_received = element_received
    stream.dataReceived(HEADER + b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
    assert [e.name for e in handler.elements] == ["starttls"]


def test_close_aborts_a_peer_that_never_finishes_closing():
    """A closed stream whose peer does not complete the close is aborted after a bound."""
    from fedxmpp.stream.xmlstream import CLOSE_TIMEOUT

    stream, _, transport, clock = connect()
    aborted = []
    transport.abortConnection = lambda: aborted.append(True)
    stream.dataReceived(HEADER)
    stream.close()
    clock.advance(CLOSE_TIMEOUT + 0.1)
    assert aborted == [True]
