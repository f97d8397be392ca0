"""The receiving side of an XMPP stream (RFC 6120 §4).

:class:`ServerStream` owns the socket: it runs the safe parser, answers the
stream header, sends stream errors, restarts the stream after STARTTLS and SASL,
enforces the negotiation and idle timeouts, sends whitespace keepalives and
closes a peer that stops reading.  It also decides when to stop reading
from its peer (``transport.pauseProducing``), for three reasons, each
released on its own:

* the peer does not read what we send (our send buffer is full);
* the peer sent more than its shaper allows (:mod:`fedxmpp.stream.shaper`);
* **backpressure**: a client stream fed a stream whose send buffer is full —
  what it sends would only pile up in our memory.  The client is read again
  when that buffer has drained.  So that this cannot deadlock (two clients
  flooding each other, neither reading), a stream that keeps others waiting
  for ``[limits] max_send_stall`` seconds without draining is closed with
  ``<resource-constraint/>``, which releases them and ends its session as any
  stream error does.  Only client streams are held: a server-to-server or
  component link carries many users' traffic, and holding it for one slow
  reader would stall them all; those links are bounded by their shapers and
  every stream by ``max_send_buffer``.

What the stream *means* (which features, what
happens to a stanza) belongs to its :class:`StreamHandler`, one per transport.
"""

from __future__ import annotations

import base64
import os
from contextvars import ContextVar
from typing import Any, Callable, Protocol as TypingProtocol

from twisted.internet import interfaces
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import implementer

from fedxmpp.stream.framing import Parser
from fedxmpp.stream.shaper import TokenBucket
from fedxmpp.stream.transport import IStreamTransport, StreamLink, TcpLink
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.serialize import serialize

log = Logger()

# Seconds a closed stream waits for the peer to finish the TCP/TLS close.
CLOSE_TIMEOUT = 2.0

# Why reading from a peer is paused (besides the streams it waits for).
SHAPED = "shaped"
NOT_READING = "not-reading"
# The session above holds reading while too many of its stanzas wait for storage.
SETTLING = "settling"

# The stream whose bytes are being handled: whatever is written meanwhile, it fed.
_feeding: ContextVar[ServerStream | None] = ContextVar("fedxmpp_feeding", default=None)


class StreamLimits(TypingProtocol):
    # Read-only, so that the frozen LimitsConfig provides it.
    @property
    def max_stanza_size(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def max_send_buffer(self) -> int: ...
    @property
    def max_send_stall(self) -> float: ...


class StreamHandler(TypingProtocol):
    """The meaning of one stream; the transports (c2s, s2s, component) provide it."""

    def stream_opened(self, stream: ServerStream, root: domish.Element) -> str:
        """Check the peer's header; return the domain we speak as, or raise StreamError."""

    def features(self, stream: ServerStream) -> domish.Element | None:
        """The <stream:features/> to send after our header, or None for none."""

    def element_received(self, stream: ServerStream, element: domish.Element) -> None:
        """A complete top-level element (stanza or nonza) arrived."""

    def stream_closing(self, stream: ServerStream) -> None:
        """The stream is closing (a closing tag or a stream error sent, or the
        connection aborted): nothing more will be written to it."""

    def stream_closed(self, stream: ServerStream, reason: Failure) -> None:
        """The connection is gone, cleanly or not."""


def new_stream_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


@implementer(interfaces.IPushProducer)
class ServerStream(Protocol):
    """One inbound XMPP stream, from the first byte to the closed socket."""
    transport: IStreamTransport  # narrower than Twisted's ITransport | None; see stream/transport.py

    # Extra (prefix, namespace) declarations for our stream header, e.g. the
    # dialback 'db' prefix that S2S streams declare (XEP-0220 §2.4.1).
    header_prefixes: tuple[tuple[str, str], ...] = ()

    def __init__(self, handler: StreamHandler, *, content_ns: str, limits: StreamLimits, clock: interfaces.IReactorTime,
                 negotiation_timeout: float, idle_timeout: float = 0.0, keepalive_interval: float = 0.0,
                 on_lost: Callable[[ServerStream], None] | None = None, versioned: bool = True,
                 shaper: TokenBucket | None = None, backpressure: bool = False,
                 link: StreamLink | None = None) -> None:
        self.handler = handler
        # The connection as the layers above see it (TLS state, peer, framing).
        self.link: StreamLink = link if link is not None else TcpLink()
        self._framing = self.link.framing
        self._standalone = self._framing.standalone
        self.shaper = shaper
        # Whether reading from this peer pauses while a stream it fed cannot take more.
        self.backpressure = backpressure
        # XEP-0114 component streams predate stream versions: when False, any header
        # version is accepted and ours carries none (so no features are expected).
        self.versioned = versioned
        self.on_lost = on_lost
        self.content_ns = content_ns
        self.limits = limits
        self.clock = clock
        self.negotiation_timeout = negotiation_timeout
        self.idle_timeout = idle_timeout
        # A framing without whitespace keepalives has its transport ping.
        self.keepalive_interval = keepalive_interval if self._framing.keepalive is not None else 0.0

        self.stream_id = ""
        self.domain: str | None = None
        self.peer_lang = "en"
        self.header_sent = False
        self.closed = False
        # Why the stream was closed: "peer" (its closing tag), the condition of the
        # stream error we sent, "local" (we closed it), or None when the connection
        # just broke.  XEP-0198 keeps a session resumable only in the last case.
        self.close_reason: str | None = None
        self.connected_at = 0.0
        self.tls = False
        self._parser: Parser | None = None
        self._idle_call: interfaces.IDelayedCall | None = None
        self._keepalive_call: interfaces.IDelayedCall | None = None
        self._negotiation_call: interfaces.IDelayedCall | None = None
        self._abort_call: interfaces.IDelayedCall | None = None
        self._paused = False
        self._unread_bytes = 0
        # Why reading is paused: SHAPED, NOT_READING, or the streams we wait for.
        self._holds: set[object] = set()
        # The streams held because they fed us while our send buffer was full.
        self._waiting: set[ServerStream] = set()
        self._stall_call: Any = None
        self._shaper_call: Any = None
        # Called once, just before our stream error or closing tag: the last
        # words of the layer above (XEP-0198's final <a h/>).
        self.before_close: Callable[[], None] | None = None
        self._lost = False
        self._closing_told = False
        # Waiting for the transport to take more (writable) or to have passed on
        # what was written (flushed); see those methods.
        self._writable_waiters: list[Deferred[bool]] = []
        self._flushed_waiters: list[Deferred[bool]] = []
        self.bytes_in = 0
        self.bytes_out = 0

    # -- connection -------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected_at = self.clock.seconds()
        self.link.attach(self.transport)
        set_nodelay(self.transport)
        self.transport.registerProducer(self, True)
        self._negotiation_call = self.clock.callLater(self.negotiation_timeout, self._negotiation_timed_out)
        self._new_parser()
        self._touch()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        self._lost = True
        self._release_waiting()
        for call in (self._negotiation_call, self._idle_call, self._keepalive_call, self._abort_call,
                     self._shaper_call):
            if call is not None and call.active():
                call.cancel()
        self._negotiation_call = self._idle_call = self._keepalive_call = self._shaper_call = None
        self._parser = None
        self.handler.stream_closed(self, reason)
        # After the handler: a writer woken now sees the session as it is (ended, or hibernating).
        self._release(self._writable_waiters, False)
        self._release(self._flushed_waiters, False)
        if self.on_lost is not None:
            self.on_lost(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closed or self._parser is None:
            return
        self.bytes_in += len(data)
        self._touch()
        if self.shaper is not None:
            self._shape(len(data))
        feeding = _feeding.set(self)
        try:
            self._parser.feed(data)
        except StreamError as e:
            self.fail(e)
        finally:
            _feeding.reset(feeding)

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
        self.write(serialize(element, self.content_ns, self._standalone))

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
                self._release_waiting()
                self.transport.abortConnection()
                self._closing()
                return
            self._hold_feeder()
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
        self._last_words()
        self.send(error.to_element())
        self.close()

    def close(self) -> None:
        """Close the stream cleanly: our closing tag, then the TCP connection."""
        if self.closed:
            return
        if self.close_reason is None:
            self.close_reason = "local"
        self._last_words()
        self.write(self._framing.closing)
        self.closed = True
        if self._parser is not None:
            self._parser.stop()
        self._parser = None
        self._release_waiting()
        # Twisted's TLS layer sends close_notify only once no producer is registered.
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        # A TLS close waits for the peer's close_notify, which a peer may never send.
        self._abort_call = self.clock.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)
        self._closing()

    def abort(self) -> None:
        """Drop the connection at once, without a closing tag, as if it broke."""
        self.transport.abortConnection()

    def _closing(self) -> None:
        """Nothing more will be written: no more waiting for room, and the handler
        is told once, so that its session stops being a destination now rather
        than when the peer finally drops the connection."""
        if not self._closing_told:
            self._closing_told = True
            self.handler.stream_closing(self)
        self._release(self._writable_waiters, False)

    # -- flow control for those who write a lot (offline messages) -------------------

    @property
    def paused(self) -> bool:
        """Whether the transport asked us to stop writing (its buffer is full)."""
        return self._paused

    def writable(self) -> Deferred[bool]:
        """True as soon as the transport takes writes without queueing past its
        buffer (at once unless paused); False if the stream closes first."""
        if self.closed:
            return succeed(False)
        if not self._paused:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        self._writable_waiters.append(d)
        return d

    def flushed(self) -> Deferred[bool]:
        """True once what was written so far has been passed on by Twisted while
        the connection is open; False if the connection is lost first.

        Twisted says so exactly when it resumes a paused stream: its buffer is
        empty then.  When the writes did not fill the buffer no such signal
        comes, so two reactor turns later without a pause count too: the TLS
        layer hands its bytes down in the next turn, and the reactor writes a
        socket's buffer in its I/O pass between the two.
        """
        if self._lost:
            return succeed(False)
        d: Deferred[bool] = Deferred()
        self._flushed_waiters.append(d)
        self.clock.callLater(0, self.clock.callLater, 0, self._flush_turns_done, d)
        return d

    def _flush_turns_done(self, d: Deferred[bool]) -> None:
        if d.called or self._lost or self._paused:
            return  # settled already, or settled by resumeProducing / connectionLost
        self._flushed_waiters.remove(d)
        d.callback(True)

    @staticmethod
    def _release(waiters: list[Deferred[bool]], value: bool) -> None:
        pending = list(waiters)
        waiters.clear()
        for d in pending:
            if not d.called:
                d.callback(value)

    def _last_words(self) -> None:
        before, self.before_close = self.before_close, None
        if before is not None and self.header_sent:
            before()

    # -- parser callbacks ---------------------------------------------------------

    def _new_parser(self) -> None:
        self._parser = self._framing.parser(on_stream_start=self._stream_start, on_element=self._element,
                                            on_stream_end=self._stream_end,
                                            max_stanza_size=self.limits.max_stanza_size,
                                            max_depth=self.limits.max_depth)

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
        self.write(self._framing.header(attrs))
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
        if not self.closed and self.header_sent and self._framing.keepalive:
            self.write(self._framing.keepalive)

    # -- reading paused: shaping and backpressure ----------------------------------

    def hold_reading(self, held: bool) -> None:
        """Stop (True) or start again (False) reading from the peer for the layer
        above, independently of every other reason reading is paused."""
        if held:
            self._hold_reading(SETTLING)
        else:
            self._release_reading(SETTLING)

    def _hold_reading(self, why: object) -> None:
        first = not self._holds
        self._holds.add(why)
        if first and not self.closed:
            self.transport.pauseProducing()

    def _release_reading(self, why: object) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if not self._holds and not self.closed:
            self.transport.resumeProducing()

    def _shape(self, n: int) -> None:
        wait = self.shaper.take(n)  # type: ignore[union-attr]
        if wait > 0 and self._shaper_call is None:
            self._hold_reading(SHAPED)
            self._shaper_call = self.clock.callLater(wait, self._refilled)

    def _refilled(self) -> None:
        self._shaper_call = None
        wait = self.shaper.take(0)  # type: ignore[union-attr]
        if wait > 0:  # bytes that were already on their way when reading paused
            self._shaper_call = self.clock.callLater(wait, self._refilled)
        else:
            self._release_reading(SHAPED)

    def _hold_feeder(self) -> None:
        """Written to while our send buffer is full: stop reading from the client
        stream that fed it until the buffer drains (or we are cut for stalling)."""
        feeder = _feeding.get()
        if (feeder is None or feeder is self or not feeder.backpressure or feeder.closed or self.closed
                or feeder in self._waiting):
            return
        self._waiting.add(feeder)
        feeder._hold_reading(self)
        if self._stall_call is None and self.limits.max_send_stall > 0:
            self._stall_call = self.clock.callLater(self.limits.max_send_stall, self._stalled)

    def _release_waiting(self) -> None:
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None
        waiting, self._waiting = self._waiting, set()
        for feeder in waiting:
            feeder._release_reading(self)

    def _stalled(self) -> None:
        self._stall_call = None
        log.info("Closing stream {id}: its peer read nothing for {seconds:.0f} s while {n} senders waited",
                 id=self.stream_id, seconds=self.limits.max_send_stall, n=len(self._waiting))
        self._release_waiting()
        self.fail(StreamError("resource-constraint", "You read too slowly: others are waiting to send to you"))

    # -- IPushProducer: the transport tells us when the peer stops reading --------

    def pauseProducing(self) -> None:
        self._paused = True
        self._unread_bytes = 0
        # A peer that does not read what we send may not feed us more either.
        self._hold_reading(NOT_READING)

    def resumeProducing(self) -> None:
        self._paused = False
        self._unread_bytes = 0
        # The transport's buffer is empty: everything written so far was passed on.
        self._release(self._flushed_waiters, True)
        self._release_waiting()
        self._release_reading(NOT_READING)
        if not self.closed:
            self._release(self._writable_waiters, True)

    def stopProducing(self) -> None:
        self._paused = False
        self._release_waiting()


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


def end_reason(stream: ServerStream, peer: str = "the peer") -> str:
    """Why *stream* ended, for a log line: closed by either side, the connection
    lost, or the stream error's condition."""
    reason = stream.close_reason
    if reason is None:
        return "connection lost"
    if reason == "peer":
        return f"closed by {peer}"
    if reason == "local":
        return "closed by the server"
    return f"stream error <{reason}/>"


def duration(stream: ServerStream) -> float:
    """Seconds since *stream*'s connection was made."""
    return stream.clock.seconds() - stream.connected_at
