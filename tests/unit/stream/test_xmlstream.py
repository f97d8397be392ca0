"""The server side of a stream on Twisted's fakes: headers, errors, timers, back-pressure."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from fedxmpp.stream.shaper import TokenBucket, shaper
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
    max_send_stall: float = 30.0


class RecordingHandler:
    def __init__(self) -> None:
        self.elements: list[domish.Element] = []
        self.closing = 0
        self.closed = 0

    def stream_opened(self, stream, root):
        if root.getAttribute("to") != "example.test":
            raise StreamError("host-unknown")
        return "example.test"

    def features(self, stream):
        return domish.Element((ns.STREAMS, "features"))

    def element_received(self, stream, element):
        self.elements.append(element)

    def stream_closing(self, stream):
        self.closing += 1

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


# -- shaping: a connection faster than its rate is read more slowly -------------------------


def test_token_bucket_allows_the_burst_then_the_rate():
    """take() answers how long to wait: nothing within the burst, then the time
    the missing bytes take to come back at the rate; tokens never exceed the burst."""
    clock = Clock()
    bucket = TokenBucket(rate=1000, burst=5000, clock=clock)
    assert bucket.take(5000) == 0
    assert bucket.take(500) == 0.5
    clock.advance(100)
    assert bucket.take(5000) == 0 and bucket.take(1) > 0
    assert shaper(0, 5000, clock) is None


def test_shaped_connection_is_paused_after_its_burst_and_resumed_as_tokens_refill():
    """Past its burst a connection is not read (transport paused, no error) until
    its tokens have come back; then it is read again."""
    clock = Clock()
    stream, handler, transport, _ = connect(shaper=TokenBucket(rate=1000, burst=len(HEADER) + 2000, clock=clock))
    stream.clock = clock
    stream.dataReceived(HEADER)
    stream.dataReceived(b"<message><body>" + b"x" * 1000 + b"</body></message>")
    assert transport.producerState == "producing"
    stream.dataReceived(b"<message><body>" + b"y" * 1500 + b"</body></message>")
    assert transport.producerState == "paused"
    assert len(handler.elements) == 2  # what arrived is handled; nothing is lost
    clock.advance(0.5)
    assert transport.producerState == "paused"
    clock.advance(0.6)
    assert transport.producerState == "producing"
    assert not stream.closed


def test_shaper_and_a_peer_that_does_not_read_release_reading_each_on_its_own():
    """Reading resumes only once every reason to pause is gone."""
    clock = Clock()
    stream, _, transport, _ = connect(shaper=TokenBucket(rate=1000, burst=len(HEADER) + 100, clock=clock))
    stream.clock = clock
    stream.dataReceived(HEADER + b"<presence>" + b" " * 1000 + b"</presence>")
    stream.pauseProducing()
    clock.advance(10)
    assert transport.producerState == "paused"
    stream.resumeProducing()
    assert transport.producerState == "producing"


# -- backpressure: a client feeding a stream that cannot take more is not read ----------------


def pair(**recipient_kw):
    """A client stream whose stanzas go to a second stream, as the router would."""
    recipient, _, recipient_transport, clock = connect(negotiation_timeout=1000, **recipient_kw)
    sender, handler, sender_transport, _ = connect(negotiation_timeout=1000, backpressure=True)
    sender.clock = clock
    recipient.dataReceived(HEADER)
    sender.dataReceived(HEADER)
    handler.element_received = lambda s, element: recipient.send(element)
    return sender, sender_transport, recipient, recipient_transport, clock


def test_full_recipient_pauses_its_sender_and_draining_resumes_it():
    """While the recipient's send buffer is full (the transport paused it), a client
    that sends to it is not read; when the buffer drains, it is read again."""
    sender, sender_transport, recipient, recipient_transport, _ = pair()
    sender.dataReceived(b"<message><body>1</body></message>")
    assert sender_transport.producerState == "producing"
    recipient.pauseProducing()
    sender.dataReceived(b"<message><body>2</body></message>")
    assert sender_transport.producerState == "paused"
    assert "<body>2</body>" in recipient_transport.value().decode()  # written, not lost
    recipient.resumeProducing()
    assert sender_transport.producerState == "producing"
    assert not sender.closed and not recipient.closed


def test_stream_that_keeps_senders_waiting_too_long_is_closed_and_releases_them():
    """No deadlock: a recipient that does not drain within max_send_stall seconds
    while a sender waits is closed with <resource-constraint/>, and the sender is
    read again."""
    sender, sender_transport, recipient, recipient_transport, clock = pair()
    recipient.pauseProducing()
    sender.dataReceived(b"<message><body>flood</body></message>")
    assert sender_transport.producerState == "paused"
    clock.advance(29)
    assert not recipient.closed
    clock.advance(2)
    assert recipient.closed and recipient.close_reason == "resource-constraint"
    assert "<resource-constraint" in recipient_transport.value().decode()
    assert sender_transport.producerState == "producing"


def test_two_clients_flooding_each_other_cannot_deadlock():
    """A and B each feed the other while neither reads: both are held, and the
    stall timeout closes them, so nothing waits for ever."""
    a, a_transport, b, b_transport, clock = pair()
    b.backpressure = True
    b.handler.element_received = lambda s, element: a.send(element)
    a.pauseProducing()
    b.pauseProducing()
    a.dataReceived(b"<message><body>to b</body></message>")
    b.dataReceived(b"<message><body>to a</body></message>")
    assert a.transport.producerState == b.transport.producerState == "paused"
    clock.advance(31)
    assert a.closed and b.closed
    assert a.close_reason == b.close_reason == "resource-constraint"


def test_server_links_are_not_held_by_one_slow_recipient():
    """A stream without backpressure (s2s, components: many users' traffic) keeps
    being read; max_send_buffer bounds the recipient."""
    sender, sender_transport, recipient, _, _ = pair()
    sender.backpressure = False
    recipient.pauseProducing()
    sender.dataReceived(b"<message><body>x</body></message>")
    assert sender_transport.producerState == "producing"


def test_a_recipient_that_closes_releases_its_waiting_senders():
    sender, sender_transport, recipient, _, _ = pair()
    recipient.pauseProducing()
    sender.dataReceived(b"<message><body>x</body></message>")
    recipient.connectionLost(None)
    assert sender_transport.producerState == "producing"


def test_handler_is_told_of_the_closing_once_when_it_starts():
    """The peer's closing tag, our close, a stream error and an abort for a peer
    that stopped reading each tell the handler the stream is closing, at once and
    once, before the connection is gone."""
    stream, handler, _, _ = connect()
    stream.dataReceived(HEADER + b"</stream:stream>")
    assert (handler.closing, handler.closed) == (1, 0)
    stream.close()
    stream.connectionLost(None)
    assert (handler.closing, handler.closed) == (1, 1)

    stream, handler, _, _ = connect()
    stream.dataReceived(HEADER)
    stream.fail(StreamError("conflict"))
    assert handler.closing == 1

    stream, handler, _, _ = connect()
    stream.dataReceived(HEADER)
    stream.pauseProducing()
    for _ in range(30):
        stream.write("x" * 1000)
    assert stream.closed and handler.closing == 1


def test_writable_waits_for_the_transport_to_resume():
    """writable() is True at once while the transport takes writes; while paused
    it waits for resumeProducing, and it is False when the stream closes first."""
    stream, _, _, _ = connect()
    stream.dataReceived(HEADER)
    assert stream.writable().result is True
    stream.pauseProducing()
    waiting = stream.writable()
    assert not waiting.called
    stream.resumeProducing()
    assert waiting.result is True
    stream.pauseProducing()
    waiting = stream.writable()
    stream.close()
    assert waiting.result is False


def test_flushed_after_two_turns_or_a_resume_and_never_after_a_drop():
    """flushed() fires True two reactor turns after the writes when the transport
    never paused, or when a paused transport resumes (its buffer is empty); it
    fires False when the connection is lost first, and waits while paused."""
    stream, _, _, clock = connect()
    stream.dataReceived(HEADER)
    stream.write("<message/>")
    d = stream.flushed()
    assert not d.called  # not in this turn (task.Clock runs both later turns at once)
    clock.advance(0)
    assert d.result is True

    stream.pauseProducing()
    d = stream.flushed()
    clock.advance(0)
    clock.advance(0)
    assert not d.called  # still in Twisted's buffer
    stream.resumeProducing()
    assert d.result is True

    d = stream.flushed()
    stream.pauseProducing()
    stream.connectionLost(None)
    assert d.result is False
    assert stream.flushed().result is False


def test_flushed_survives_our_clean_close():
    """What was written before our closing tag is still flushed by Twisted's
    loseConnection: after close() the connection is open until it is lost."""
    stream, _, _, clock = connect()
    stream.dataReceived(HEADER)
    stream.write("<message/>")
    d = stream.flushed()
    stream.close()
    clock.advance(0)
    clock.advance(0)
    assert d.result is True
