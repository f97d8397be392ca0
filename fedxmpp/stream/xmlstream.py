"""The receiving side of an XMPP stream (RFC 6120 §4).

:class:`ServerStream` owns the socket: it runs the safe parser, answers the
stream header, sends stream errors, restarts the stream after STARTTLS and SASL,
enforces the negotiation and idle timeouts, sends whitespace keepalives and
closes a peer that stops reading.  What the stream *means* (which features, what
happens to a stanza) belongs to its :class:`StreamHandler`, one per transport.
"""

from __future__ import annotations

import base64
import os
from typing import Callable, Protocol as TypingProtocol

from twisted.internet import interfaces
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import implementer

from fedxmpp.xml import ns
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.parser import StreamParser
from fedxmpp.xml.serialize import serialize

log = Logger()

# Seconds a closed stream waits for the peer to finish the TCP/TLS close.
CLOSE_TIMEOUT = 2.0


class StreamLimits(TypingProtocol):
    max_stanza_size: int
    max_depth: int
    max_send_buffer: int


class StreamHandler(TypingProtocol):
    """The meaning of one stream; the transports (c2s, s2s, component) provide it."""

    def stream_opened(self, stream: ServerStream, root: domish.Element) -> str:
        """Check the peer's header; return the domain we speak as, or raise StreamError."""

    def features(self, stream: ServerStream) -> domish.Element | None:
        """The <stream:features/> to send after our header, or None for none."""

    def element_received(self, stream: ServerStream, element: domish.Element) -> None:
        """A complete top-level element (stanza or nonza) arrived."""

    def stream_closed(self, stream: ServerStream, reason: Failure) -> None:
        """The connection is gone, cleanly or not."""


def new_stream_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


@implementer(interfaces.IPushProducer)
class ServerStream(Protocol):
    """One inbound XMPP stream, from the first byte to the closed socket."""

    # Extra (prefix, namespace) declarations for our stream header, e.g. the
    # dialback 'db' prefix that S2S streams declare (XEP-0220 §2.4.1).
    header_prefixes: tuple[tuple[str, str], ...] = ()

    def __init__(self, handler: StreamHandler, *, content_ns: str, limits: StreamLimits, clock: interfaces.IReactorTime,
                 negotiation_timeout: float, idle_timeout: float = 0.0, keepalive_interval: float = 0.0,
                 on_lost: Callable[[ServerStream], None] | None = None, versioned: bool = True) -> None:
        self.handler = handler
        # XEP-0114 component streams predate stream versions: when False, any header
        # version is accepted and ours carries none (so no features are expected).
        self.versioned = versioned
        self.on_lost = on_lost
        self.content_ns = content_ns
        self.limits = limits
        self.clock = clock
        self.negotiation_timeout = negotiation_timeout
        self.idle_timeout = idle_timeout
        self.keepalive_interval = keepalive_interval

        self.stream_id = ""
        self.domain: str | None = None
        self.peer_lang = "en"
        self.header_sent = False
        self.closed = False
        # Why the stream was closed: "peer" (its closing tag), the condition of the
        # stream error we sent, "local" (we closed it), or None when the connection
        # just broke.  XEP-0198 keeps a session resumable only in the last case.
        self.close_reason: str | None = None
        self.tls = False
        self._parser: StreamParser | None = None
        self._idle_call = None
        self._keepalive_call = None
        self._negotiation_call = None
        self._abort_call = None
        self._paused = False
        self._unread_bytes = 0
        # Reading held by the session above (its stanzas wait for storage).
        self._reading_held = False
        self.bytes_in = 0
        self.bytes_out = 0

    # -- connection -------------------------------------------------------------

    def connectionMade(self) -> None:
        set_nodelay(self.transport)
        self.transport.registerProducer(self, True)
        self._negotiation_call = self.clock.callLater(self.negotiation_timeout, self._negotiation_timed_out)
        self._new_parser()
        self._touch()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        for call in (self._negotiation_call, self._idle_call, self._keepalive_call, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        self._negotiation_call = self._idle_call = self._keepalive_call = None
        self._parser = None
        self.handler.stream_closed(self, reason)
        if self.on_lost is not None:
            self.on_lost(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closed or self._parser is None:
            return
        self.bytes_in += len(data)
        self._touch()
        try:
            self._parser.feed(data)
        except StreamError as e:
            self.fail(e)

    # -- what the handler calls ---------------------------------------------------

    def restart(self) -> None:
        """Expect a new stream header (RFC 6120 §4.3.3): after STARTTLS and SASL.

        Whatever the old parser still holds is discarded: bytes sent after
        ``<starttls/>`` in the same plaintext read must never reach the new,
        encrypted stream (the STARTTLS command injection attack).
        """
        self.header_sent = False
        if self._parser is not None:
            self._parser.stop()
        self._new_parser()

    def negotiated(self) -> None:
        """Negotiation is over (a resource is bound): stop the negotiation timer."""
        if self._negotiation_call is not None and self._negotiation_call.active():
            self._negotiation_call.cancel()
        self._negotiation_call = None

    def send(self, element: domish.Element) -> None:
        self.write(serialize(element, self.content_ns))

    def write(self, text: str) -> None:
        if self.closed:
            return
        data = text.encode("utf-8")
        self.bytes_out += len(data)
        if self._paused:
            self._unread_bytes += len(data)
            if self._unread_bytes > self.limits.max_send_buffer:
                log.info("Closing stream {id}: peer stopped reading ({n} bytes waiting)",
                         id=self.stream_id, n=self._unread_bytes)
                self.closed = True
                self.transport.abortConnection()
                return
        self.transport.write(data)
        self._schedule_keepalive()

    def fail(self, error: StreamError) -> None:
        """Send a stream error and close (RFC 6120 §4.9.1.1)."""
        if self.closed:
            return
        log.info("Stream error {condition} on {id}: {text}", condition=error.condition,
                 id=self.stream_id or "-", text=error.text or "")
        self.close_reason = error.condition
        if not self.header_sent:
            self._send_header(self.domain)
        self.send(error.to_element())
        self.close()

    def close(self) -> None:
        """Close the stream cleanly: our closing tag, then the TCP connection."""
        if self.closed:
            return
        if self.close_reason is None:
            self.close_reason = "local"
        self.write("</stream:stream>")
        self.closed = True
        if self._parser is not None:
            self._parser.stop()
        self._parser = None
        # Twisted's TLS layer sends close_notify only once no producer is registered.
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        # A TLS close waits for the peer's close_notify, which a peer may never send.
        self._abort_call = self.clock.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)

    # -- parser callbacks ---------------------------------------------------------

    def _new_parser(self) -> None:
        self._parser = StreamParser(on_stream_start=self._stream_start, on_element=self._element,
                                    on_stream_end=self._stream_end,
                                    max_stanza_size=self.limits.max_stanza_size, max_depth=self.limits.max_depth)

    def _stream_start(self, root: domish.Element) -> None:
        lang = root.attributes.get((ns.XML, "lang"))
        if lang and len(lang) <= 35:
            self.peer_lang = lang
        if root.uri != ns.STREAMS or root.name != "stream":
            raise StreamError("invalid-namespace", "The root element must be <stream:stream/>")
        if root.defaultUri != self.content_ns:
            raise StreamError("invalid-namespace", f"This service speaks {self.content_ns}")
        version = root.getAttribute("version", "")
        major = version.split(".", 1)[0]
        if self.versioned and (not major.isdigit() or int(major) < 1):
            raise StreamError("unsupported-version", "XMPP 1.0 streams only")
        self.domain = self.handler.stream_opened(self, root)
        self._send_header(self.domain, peer=root.getAttribute("from"))
        features = self.handler.features(self)
        if features is not None:
            self.send(features)

    def _element(self, element: domish.Element) -> None:
        if not self.closed:
            self.handler.element_received(self, element)

    def _stream_end(self) -> None:
        self.close_reason = "peer"
        self.close()

    def _send_header(self, domain: str | None, peer: str | None = None) -> None:
        self.stream_id = new_stream_id()
        attrs = [f"xmlns='{self.content_ns}'", f"xmlns:stream='{ns.STREAMS}'", f"id='{self.stream_id}'",
                 "version='1.0'", "xml:lang='en'"]
        if not self.versioned:
            attrs.remove("version='1.0'")
        for prefix, uri in self.header_prefixes:
            attrs.insert(2, f"xmlns:{prefix}='{uri}'")
        if domain:
            attrs.insert(2, f"from='{domain}'")
        if peer:
            try:
                attrs.insert(3, f"to='{domish.escapeToXml(peer, isattrib=1)}'")
            except Exception:  # pragma: no cover - a header attribute we cannot echo is left out
                pass
        self.write("<?xml version='1.0'?><stream:stream " + " ".join(attrs) + ">")
        self.header_sent = True

    # -- timers ---------------------------------------------------------------------

    def _negotiation_timed_out(self) -> None:
        self._negotiation_call = None
        self.fail(StreamError("connection-timeout", "Authentication took too long"))

    def _touch(self) -> None:
        if not self.idle_timeout:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.idle_timeout)
        else:
            self._idle_call = self.clock.callLater(self.idle_timeout, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        self._idle_call = None
        self.fail(StreamError("connection-timeout", "Idle for too long"))

    def _schedule_keepalive(self) -> None:
        if not self.keepalive_interval or self.closed:
            return
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.reset(self.keepalive_interval)
        else:
            self._keepalive_call = self.clock.callLater(self.keepalive_interval, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_call = None
        if not self.closed and self.header_sent:
            self.write(" ")

    # -- IPushProducer: the transport tells us when the peer stops reading --------

    def pauseProducing(self) -> None:
        self._paused = True
        self._unread_bytes = 0
        # A peer that does not read what we send may not feed us more either.
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._unread_bytes = 0
        if not self.closed and not self._reading_held:
            self.transport.resumeProducing()

    def hold_reading(self, held: bool) -> None:
        """Stop (True) or start again (False) reading from the peer for the layer
        above, independently of the pause for a peer that does not read."""
        if held == self._reading_held or self.closed:
            self._reading_held = held
            return
        self._reading_held = held
        if held:
            self.transport.pauseProducing()
        elif not self._paused:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._paused = False


def set_nodelay(transport: object) -> None:
    """Turn Nagle off on the TCP socket under *transport* (also below TLS).

    Stanzas are small and interactive; with Nagle on, loopback round trips stall
    ~40 ms on delayed ACKs.  Twisted already coalesces writes per reactor turn.
    """
    seen = 0
    while transport is not None and seen < 4:
        setter = getattr(transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except OSError:
                pass
            return
        transport = getattr(transport, "transport", None)
        seen += 1
