"""Stanzas to remote domains: the router's default route.

:class:`Outgoing` keeps one :class:`Destination` per remote domain.  A destination
holds a bounded queue of the stanzas waiting for an authenticated stream and the
streams we opened to that domain::

    route() ─▶ queue (bounded; overflow ▶ <resource-constraint/>)
            ─▶ resolve (SRV / A+AAAA) ─▶ connect ─▶ STARTTLS or direct TLS (SNI = remote domain)
            ─▶ our own check of the peer's certificate
            ─▶ SASL EXTERNAL (certificate verifies, peer offers it) | dialback (XEP-0220)
            ─▶ drain the queue in order

A stream authenticates one of our domains (the stream header's 'from'); others
are added to a dialback stream with another ``<db:result/>`` (multiplexing,
XEP-0220 §4), or get a stream of their own when the first used SASL EXTERNAL,
or when the peer refused them on a shared stream: each domain, a component's
included, then presents its own certificate.

Failure is never silence: when every target of a round has failed, each stanza
queued for it is bounced (``<remote-server-not-found/>``, or
``<remote-server-timeout/>`` for timeouts); whatever waits longer than
``send_timeout`` bounces with ``<remote-server-timeout/>``.  After a failed round
the next one waits (1 s, doubling up to 5 minutes); a success resets that.

The receiving side (incoming) also uses destinations, to send ``<db:verify/>`` to
the authoritative server of a domain that asked us for dialback.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, error as net_error, interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import implementer

from fedxmpp.s2s import dialback
from fedxmpp.s2s.resolver import ResolveError, S2SResolver, Target
from fedxmpp.stream.transport import IStreamTransport
from fedxmpp.tls import PeerCheck, peer_chain
from fedxmpp.stream.xmlstream import set_nodelay
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError
from fedxmpp.xml.jid import JID
from fedxmpp.xml.parser import StreamParser
from fedxmpp.xml.serialize import serialize

if TYPE_CHECKING:
    from fedxmpp.s2s.context import S2SContext

log = Logger()

ALPN = b"xmpp-server"
CLOSE_TIMEOUT = 2.0
MAX_BACKOFF = 300.0
FIRST_BACKOFF = 1.0

NOT_FOUND = "remote-server-not-found"
TIMEOUT = "remote-server-timeout"


class StreamFailed(Exception):
    """A stream could not be authenticated; *condition* is the stanza error for the
    senders of the stanzas that waited for it."""

    def __init__(self, condition: str, reason: str) -> None:
        super().__init__(reason)
        self.condition = condition
        self.reason = reason


class Stage(enum.Enum):
    HEADER = "header"  # waiting for the peer's stream header and features
    TLS = "tls"  # <starttls/> sent
    SASL = "sasl"  # <auth mechanism='EXTERNAL'/> sent
    RESTART = "restart"  # SASL succeeded; waiting for the new stream's features
    DIALBACK = "dialback"  # <db:result/> sent for our first domain
    READY = "ready"  # at least one of our domains is authenticated
    CLOSED = "closed"


def _child(element: domish.Element, uri: str, name: str) -> domish.Element | None:
    for child in element.elements():
        if child.uri == uri and child.name == name:
            return child
    return None


@implementer(interfaces.IPushProducer)
class OutgoingStream(Protocol):
    """One stream we initiate from our domain *local* to a remote server."""
    transport: IStreamTransport  # narrower than Twisted's ITransport | None; see stream/transport.py

    def __init__(self, destination: Destination, local: str, target: Target) -> None:
        self.destination = destination
        self.ctx = destination.ctx
        self.remote = destination.remote
        self.local = local
        self.target = target
        self.stage = Stage.HEADER
        self.tls = target.direct_tls
        self.peer: PeerCheck | None = None
        self.stream_id: str | None = None
        self.dialback_offered = False
        self.mechanism: str | None = None
        self.authed: set[str] = set()
        self.dialback_pending: set[str] = set()
        self.ready: defer.Deferred[OutgoingStream] = defer.Deferred()
        self.closed = False
        self.failure: StreamFailed | None = None
        self._parser: StreamParser | None = None
        self._header_db = False
        self._negotiation_call: Any = None
        self._idle_call: Any = None
        self._abort_call: Any = None
        self._paused = False
        self._unread = 0
        self._connected_at = 0.0

    def __repr__(self) -> str:
        return f"<OutgoingStream {self.local} -> {self.remote} via {self.target} {self.stage.value}>"

    # -- connection --------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._connected_at = self.ctx.clock.seconds()
        set_nodelay(self.transport)
        self.transport.registerProducer(self, True)
        clock = self.ctx.clock
        self._negotiation_call = clock.callLater(self.ctx.config.auth_timeout, self._negotiation_timed_out)
        self._touch()
        log.info("S2S {local} -> {remote}: connected to {target}", local=self.local, remote=self.remote,
                 target=str(self.target))
        self._open()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        was = self.stage
        self.closed = True
        self.stage = Stage.CLOSED
        for call in (self._negotiation_call, self._idle_call, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        self._parser = None
        why = str(self.failure) if self.failure is not None else (
            "connection lost" if reason is None or not reason.check(net_error.ConnectionDone) else "closed")
        log.info("S2S {local} -> {remote}: stream via {target} ended ({why}) after {duration:.1f} s",
                 local=self.local, remote=self.remote, target=str(self.target), why=why,
                 duration=self.ctx.clock.seconds() - self._connected_at)
        if not self.ready.called:
            failure = self.failure or StreamFailed(
                NOT_FOUND, f"connection closed during {was.value}"
                           + (f" ({reason.getErrorMessage()})" if reason is not None else ""))
            self.ready.errback(failure)
        self.destination.stream_lost(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closed or self._parser is None:
            return
        self._touch()
        try:
            self._parser.feed(data)
        except StreamError as e:
            self.fail(e, StreamFailed(NOT_FOUND, f"the peer's stream broke: {e}"))

    # -- writing -------------------------------------------------------------------------

    def write(self, text: str) -> None:
        if self.closed:
            return
        data = text.encode("utf-8")
        if self._paused:
            self._unread += len(data)
            if self._unread > self.ctx.limits.max_send_buffer:
                log.info("S2S {local} -> {remote}: the peer stopped reading; closing", local=self.local,
                         remote=self.remote)
                self.closed = True
                self.transport.abortConnection()
                return
        self.transport.write(data)

    def send_stanza(self, stanza: domish.Element) -> None:
        self.write(serialize(stanza, ns.SERVER))
        self._touch()

    def _open(self) -> None:
        """Send our stream header (again after TLS and SASL) with a new parser."""
        if self._parser is not None:
            self._parser.stop()
        self._parser = StreamParser(on_stream_start=self._stream_start, on_element=self._element,
                                    on_stream_end=self._stream_end,
                                    max_stanza_size=self.ctx.limits.max_stanza_size,
                                    max_depth=self.ctx.limits.max_depth)
        self.write("<?xml version='1.0'?>"
                   f"<stream:stream xmlns='{ns.SERVER}' xmlns:stream='{ns.STREAMS}' "
                   f"xmlns:db='{dialback.NS_DIALBACK}' from='{_attr(self.local)}' to='{_attr(self.remote)}' "
                   "version='1.0' xml:lang='en'>")

    def close(self) -> None:
        """Our closing tag, then the connection (aborted if the peer never closes)."""
        if self.closed:
            return
        self.write("</stream:stream>")
        self.closed = True
        if self._parser is not None:
            self._parser.stop()
        self._parser = None
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._abort_call = self.ctx.clock.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)

    def fail(self, error: StreamError | None, failure: StreamFailed) -> None:
        """Give up on this stream: a stream error (if any) and close."""
        if self.failure is None:
            self.failure = failure
        if self.closed:
            return
        log.info("S2S {local} -> {remote}: {reason}", local=self.local, remote=self.remote,
                 reason=failure.reason)
        if error is not None:
            self.write(serialize(error.to_element(), ns.SERVER))
        self.close()

    # -- parser callbacks --------------------------------------------------------------

    def _stream_start(self, root: domish.Element) -> None:
        if root.uri != ns.STREAMS or root.name != "stream" or root.defaultUri != ns.SERVER:
            raise StreamError("invalid-namespace", "expected a jabber:server stream")
        major = root.getAttribute("version", "").split(".", 1)[0]
        if not major.isdigit() or int(major) < 1:
            raise StreamError("unsupported-version", "XMPP 1.0 streams only")
        self.stream_id = root.getAttribute("id")
        self._header_db = (root.localPrefixes or {}).get("db") == dialback.NS_DIALBACK

    def _stream_end(self) -> None:
        if not self.ready.called and self.failure is None:
            self.failure = StreamFailed(NOT_FOUND, f"the peer closed the stream during {self.stage.value}")
        self.close()

    def _element(self, el: domish.Element) -> None:
        if self.closed:
            return
        uri = el.uri
        if uri == ns.STREAMS and el.name == "features":
            self._features(el)
        elif uri == ns.STREAMS and el.name == "error":
            condition = next((c.name for c in el.elements() if c.uri == ns.STREAM_ERRORS and c.name != "text"),
                             "undefined-condition")
            text = next((str(c) for c in el.elements() if c.name == "text"), "")
            bounce = TIMEOUT if condition in ("connection-timeout", "remote-connection-failed") else NOT_FOUND
            self.failure = self.failure or StreamFailed(bounce, f"stream error <{condition}/> {text}".strip())
            log.info("S2S {local} -> {remote}: the peer sent the stream error {condition} {text}",
                     local=self.local, remote=self.remote, condition=condition, text=text)
            self.close()
        elif uri == ns.TLS:
            self._tls_answer(el)
        elif uri == ns.SASL:
            self._sasl_answer(el)
        elif uri == dialback.NS_DIALBACK:
            self._dialback(el)
        else:
            # Streams are one-way (RFC 6120 §4.1): nothing else should come back.
            log.debug("S2S {local} -> {remote}: ignored <{name}/> on an outgoing stream", local=self.local,
                      remote=self.remote, name=el.name)

    # -- negotiation ---------------------------------------------------------------------

    def _features(self, features: domish.Element) -> None:
        cfg = self.ctx.config
        if self.stage is Stage.RESTART:
            self._authenticated(self.local, "SASL EXTERNAL")
            return
        if self.stage is not Stage.HEADER:
            return
        if not self.tls:
            if _child(features, ns.TLS, "starttls") is not None:
                self.stage = Stage.TLS
                self.write(f"<starttls xmlns='{ns.TLS}'/>")
                return
            if cfg.require_encryption:
                self.fail(StreamError("policy-violation", "Encryption is required for server-to-server streams"),
                          StreamFailed(NOT_FOUND, "the peer does not offer STARTTLS, and TLS is required"))
                return
        elif self.peer is None:
            self.peer = self.ctx.verifier.check(peer_chain(self.transport.getHandle()))
        self.dialback_offered = _child(features, dialback.NS_FEATURE, "dialback") is not None or self._header_db
        verified = self.peer is not None and self.peer.valid_for(self.remote)
        if self.tls and not verified:
            problem = self.peer.problem if self.peer is not None and not self.peer.chain_ok else \
                f"it does not name {self.remote}"
            if cfg.verify_certificates:
                self.fail(StreamError("policy-violation", f"Your certificate does not verify for {self.remote}"),
                          StreamFailed(NOT_FOUND, f"the certificate of {self.remote} does not verify: {problem}"))
                return
            log.info("S2S {local} -> {remote}: the certificate does not verify ({problem}); trying dialback",
                     local=self.local, remote=self.remote, problem=problem)
        mechanisms = _child(features, ns.SASL, "mechanisms")
        offered = [str(m).strip() for m in mechanisms.elements() if m.name == "mechanism"] \
            if mechanisms is not None else []
        if verified and "EXTERNAL" in offered and self.ctx.has_certificate(self.local):
            self.stage = Stage.SASL
            self.write(f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>"
                       f"{base64.b64encode(self.local.encode()).decode()}</auth>")
            return
        self._start_dialback()

    def _start_dialback(self) -> None:
        if not self.dialback_offered:
            self.fail(None, StreamFailed(NOT_FOUND, "the peer offers no authentication we can use "
                                                    "(no SASL EXTERNAL for us, no dialback)"))
            return
        if self.stream_id is None:
            self.fail(StreamError("invalid-id", "A stream id is needed for dialback"),
                      StreamFailed(NOT_FOUND, "the peer's stream header has no id"))
            return
        self.stage = Stage.DIALBACK
        self.request_dialback(self.local)
        self.destination.stream_can_verify(self)

    def request_dialback(self, local: str) -> None:
        """Send ``<db:result/>`` to authenticate our domain *local* on this stream."""
        assert self.stream_id is not None
        self.dialback_pending.add(local)
        key = self.ctx.keys.key(self.remote, local, self.stream_id)
        self.write(dialback.build("result", local, self.remote, key=key))

    def _tls_answer(self, el: domish.Element) -> None:
        if self.stage is not Stage.TLS:
            return
        if el.name != "proceed":
            self.fail(None, StreamFailed(NOT_FOUND, "the peer refused STARTTLS"))
            return
        self.tls = True
        self.stage = Stage.HEADER
        self.transport.startTLS(self.ctx.certificates.client_creator(self.local, self.remote))
        self._open()

    def _sasl_answer(self, el: domish.Element) -> None:
        if self.stage is not Stage.SASL:
            return
        if el.name == "success":
            self.stage = Stage.RESTART
            self.mechanism = "SASL EXTERNAL"
            self._open()
        elif el.name == "failure":
            condition = next((c.name for c in el.elements() if c.name != "text"), "undefined-condition")
            log.info("S2S {local} -> {remote}: SASL EXTERNAL failed ({condition})", local=self.local,
                     remote=self.remote, condition=condition)
            self._start_dialback()

    def _dialback(self, el: domish.Element) -> None:
        kind = el.getAttribute("type")
        frm, to = el.getAttribute("from"), el.getAttribute("to")
        if el.name == "verify":
            self.destination.verify_answered(self, frm, to, el.getAttribute("id"), kind,
                                             dialback.error_condition(el))
            return
        if el.name != "result" or to not in self.dialback_pending or frm != self.remote:
            return
        self.dialback_pending.discard(to)
        if kind == "valid":
            self._authenticated(to, "dialback")
            return
        if kind == "error":
            condition = dialback.error_condition(el) or "undefined-condition"
            failure = StreamFailed(TIMEOUT, f"dialback for {to} failed with <{condition}/>")
        else:
            failure = StreamFailed(NOT_FOUND, f"{self.remote} refused dialback for {to} (type {kind!r})")
        if to == self.local and not self.ready.called:
            self.fail(None, failure)
        else:
            log.info("S2S {local} -> {remote}: {reason}", local=to, remote=self.remote, reason=failure.reason)
            self.destination.dialback_failed(self, to, failure)

    def _authenticated(self, local: str, how: str) -> None:
        first = not self.authed
        self.authed.add(local)
        self.stage = Stage.READY
        if first:
            self.mechanism = self.mechanism or how
            if self._negotiation_call is not None and self._negotiation_call.active():
                self._negotiation_call.cancel()
            self._negotiation_call = None
        log.info("S2S {local} -> {remote}: authenticated with {how} over {tls}", local=local, remote=self.remote,
                 how=how, tls="direct TLS" if self.target.direct_tls else ("STARTTLS" if self.tls else "no TLS"))
        if not self.ready.called:
            self.ready.callback(self)
        self.destination.stream_authenticated(self, local)
        self.destination.stream_can_verify(self)

    @property
    def can_multiplex(self) -> bool:
        """Whether another of our domains can be added with ``<db:result/>``."""
        return self.stage is Stage.READY and not self.closed and self.dialback_offered \
            and self.stream_id is not None and self.mechanism == "dialback"

    @property
    def can_verify(self) -> bool:
        """Whether ``<db:verify/>`` may be sent now (TLS done, authentication under way)."""
        return not self.closed and self.stage in (Stage.DIALBACK, Stage.READY)

    # -- timers --------------------------------------------------------------------------

    def _negotiation_timed_out(self) -> None:
        self._negotiation_call = None
        self.fail(StreamError("connection-timeout", "Authentication took too long"),
                  StreamFailed(TIMEOUT, f"not authenticated after {self.ctx.config.auth_timeout:g} s"))

    def _touch(self) -> None:
        idle = self.ctx.config.idle_timeout
        if not idle or self.closed:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(idle)
        else:
            self._idle_call = self.ctx.clock.callLater(idle, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        self._idle_call = None
        log.info("S2S {local} -> {remote}: idle, closing", local=self.local, remote=self.remote)
        self.close()

    # -- IPushProducer ---------------------------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        self._unread = 0

    def resumeProducing(self) -> None:
        self._paused = False
        self._unread = 0

    def stopProducing(self) -> None:
        self._paused = False


class _StreamFactory(Factory):
    def __init__(self, destination: Destination, local: str, target: Target) -> None:
        self.destination = destination
        self.local = local
        self.target = target
        self.stream: OutgoingStream | None = None

    def buildProtocol(self, addr: Any) -> Protocol:
        self.stream = OutgoingStream(self.destination, self.local, self.target)
        self.stream.factory = self
        return self.stream


@dataclass
class _Queued:
    stanza: domish.Element
    frm: JID
    to: JID
    since: float

    @property
    def local(self) -> str:
        return self.frm.host


@dataclass
class _Verify:
    """A ``<db:verify/>`` we send to the authoritative server of *remote* for a
    stream that claims to be from it."""

    local: str
    stream_id: str
    key: str
    result: defer.Deferred[tuple[str, str | None]] = field(default_factory=defer.Deferred)
    sent_on: OutgoingStream | None = None
    timer: Any = None


class Destination:
    """Everything about one remote domain: its queue, its streams, its retries."""

    def __init__(self, outgoing: Outgoing, remote: str) -> None:
        self.outgoing = outgoing
        self.ctx = outgoing.ctx
        self.remote = remote
        self.queue: deque[_Queued] = deque()
        self.streams: list[OutgoingStream] = []
        # Our domain -> the stream that carries (or is authenticating) it.
        self.by_local: dict[str, OutgoingStream] = {}
        # Our domains with a connection round under way.
        self.rounds: dict[str, defer.Deferred[None]] = {}
        # Our domains the peer refused on a stream opened for another: they get their own.
        self.own_stream: set[str] = set()
        self.verifies: list[_Verify] = []
        self.backoff = 0.0
        self.retry_at = 0.0
        self._expire_call: Any = None

    def __repr__(self) -> str:
        return f"<Destination {self.remote} queued={len(self.queue)} streams={len(self.streams)}>"

    @property
    def idle(self) -> bool:
        return not (self.queue or self.streams or self.rounds or self.verifies)

    # -- stanzas -------------------------------------------------------------------------

    def send(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        local = frm.host
        stream = self.by_local.get(local)
        if stream is not None and local in stream.authed and not stream.closed \
                and not any(q.local == local for q in self.queue):
            stream.send_stanza(stanza)
            return
        if len(self.queue) >= self.ctx.config.queue_size:
            log.info("S2S queue for {remote} is full; bouncing", remote=self.remote)
            self.outgoing.bounce(stanza, frm, to, "resource-constraint",
                                 f"Too many stanzas waiting for {self.remote}")
            return
        self.queue.append(_Queued(stanza, frm, to, self.ctx.clock.seconds()))
        self._schedule_expiry()
        self._ensure(local)

    def _drain(self, stream: OutgoingStream, local: str) -> None:
        kept: deque[_Queued] = deque()
        sent = 0
        for item in self.queue:
            if item.local == local and not stream.closed:
                stream.send_stanza(item.stanza)
                sent += 1
            else:
                kept.append(item)
        self.queue = kept
        if sent:
            log.debug("S2S {local} -> {remote}: sent {n} queued stanzas", local=local, remote=self.remote, n=sent)

    def _bounce_local(self, local: str, condition: str, text: str) -> None:
        kept: deque[_Queued] = deque()
        bounced: list[_Queued] = []
        for item in self.queue:
            (bounced if item.local == local else kept).append(item)
        self.queue = kept
        for item in bounced:
            self.outgoing.bounce(item.stanza, item.frm, item.to, condition, text)

    def _schedule_expiry(self) -> None:
        if self._expire_call is not None and self._expire_call.active() or not self.queue:
            return
        delay = max(0.0, self.queue[0].since + self.ctx.config.send_timeout - self.ctx.clock.seconds())
        self._expire_call = self.ctx.clock.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._expire_call = None
        now = self.ctx.clock.seconds()
        limit = self.ctx.config.send_timeout
        while self.queue and self.queue[0].since + limit <= now:
            item = self.queue.popleft()
            self.outgoing.bounce(item.stanza, item.frm, item.to, TIMEOUT,
                                 f"No connection to {self.remote} within {limit:g} s")
        self._schedule_expiry()
        self._forget_if_idle()

    # -- streams -------------------------------------------------------------------------

    def _ensure(self, local: str) -> None:
        """Make sure some stream is carrying, or getting ready to carry, *local*."""
        if local in self.by_local or local in self.rounds:
            return
        for stream in self.streams if local not in self.own_stream else ():
            if stream.can_multiplex:
                self.by_local[local] = stream
                stream.request_dialback(local)
                return
        if self.rounds or any(not s.closed and s.stage is not Stage.READY for s in self.streams):
            return  # a stream is being set up; it may be able to carry this domain too
        delay = max(0.0, self.retry_at - self.ctx.clock.seconds())
        d = defer.Deferred.fromCoroutine(self._round(local, delay))
        if not d.called:
            self.rounds[local] = d

    def _kick(self) -> None:
        if self.outgoing.stopping:
            return
        for local in dict.fromkeys(q.local for q in self.queue):
            self._ensure(local)
        for v in self.verifies:
            if v.sent_on is None:
                self._ensure(v.local)

    async def _round(self, local: str, delay: float) -> None:
        try:
            await self._attempt(local, delay)
        except defer.CancelledError:
            return
        except Exception:
            log.failure("S2S {local} -> {remote}: connection round crashed", local=local, remote=self.remote)
            self._round_failed(local, NOT_FOUND, "internal error")
        finally:
            self.rounds.pop(local, None)
        # Domains that waited for this round's stream (to multiplex) need their own now.
        self._kick()
        self._forget_if_idle()

    async def _attempt(self, local: str, delay: float) -> None:
        """One round: resolve, then every target in order until one authenticates."""
        if delay:
            await deferLater(self.ctx.clock, delay, lambda: None)
        try:
            targets = await self.outgoing.resolver.targets(self.remote)
        except ResolveError as e:
            self._round_failed(local, e.condition, str(e))
            return
        last = StreamFailed(NOT_FOUND, "no targets")
        for target in targets:
            try:
                await self._open(target, local)
            except StreamFailed as e:
                last = e
                continue
            except defer.CancelledError:
                raise
            except Exception as e:  # connection errors
                last = StreamFailed(_connect_condition(e), f"cannot connect to {target}: {_describe(e)}")
                log.info("S2S {local} -> {remote}: {reason}", local=local, remote=self.remote, reason=last.reason)
                continue
            self.backoff = 0.0
            self.retry_at = 0.0
            return
        self._round_failed(local, last.condition, last.reason)

    async def _open(self, target: Target, local: str) -> OutgoingStream:
        built = _StreamFactory(self, local, target)
        factory: interfaces.IProtocolFactory = built
        if target.direct_tls:
            creator = self.ctx.certificates.client_creator(local, self.remote, alpn=[ALPN])
            factory = TLSMemoryBIOFactory(creator, True, factory, clock=self.ctx.clock)
        await self.outgoing.resolver.connect(target, factory)
        stream = built.stream
        assert stream is not None
        if not stream.closed:
            self.streams.append(stream)
            self.by_local.setdefault(local, stream)
        return await stream.ready

    def _round_failed(self, local: str, condition: str, reason: str) -> None:
        self.backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, self.backoff * 2))
        self.outgoing.count_failure(condition)
        self.retry_at = self.ctx.clock.seconds() + self.backoff
        stream = self.by_local.get(local)
        if stream is not None and (stream.closed or local not in stream.authed):
            del self.by_local[local]
        n = sum(1 for q in self.queue if q.local == local)
        log.info("S2S {local} -> {remote}: giving up for now ({reason}); bouncing {n} stanza(s) with "
                 "<{condition}/>, next try in {backoff:g} s at the earliest", local=local, remote=self.remote,
                 reason=reason, n=n, condition=condition, backoff=self.backoff)
        self._bounce_local(local, condition, f"Cannot reach {self.remote}")
        for v in [v for v in self.verifies if v.local == local and v.sent_on is None]:
            self._finish_verify(v, "error", "remote-server-not-found" if condition == NOT_FOUND
                                else "remote-connection-failed")
        # Forget the destination (and its backoff) once the backoff is over and nothing waits.
        self.ctx.clock.callLater(self.backoff, self._forget_if_idle)

    def stream_authenticated(self, stream: OutgoingStream, local: str) -> None:
        self.by_local[local] = stream
        self._drain(stream, local)
        self._kick()

    def dialback_failed(self, stream: OutgoingStream, local: str, failure: StreamFailed) -> None:
        """A multiplexed ``<db:result/>`` for another of our domains was refused:
        that domain tries once more on a stream of its own (where its certificate
        may let it use SASL EXTERNAL, or the peer judge it by itself); after that,
        what waits for it bounces."""
        if self.by_local.get(local) is stream:
            del self.by_local[local]
        if local not in self.own_stream:
            self.own_stream.add(local)
            log.info("S2S {local} -> {remote}: trying a stream of its own", local=local, remote=self.remote)
            self._ensure(local)
            return
        self.outgoing.count_failure(failure.condition)
        self._bounce_local(local, failure.condition, f"Cannot reach {self.remote}")

    def stream_lost(self, stream: OutgoingStream) -> None:
        if stream in self.streams:
            self.streams.remove(stream)
        for local, s in list(self.by_local.items()):
            if s is stream:
                del self.by_local[local]
        for v in [v for v in self.verifies if v.sent_on is stream]:
            self._finish_verify(v, "error", "remote-server-timeout")
        if stream.ready.called and stream.authed:
            # It had worked: whatever is still queued gets a new stream now.
            self._kick()
        self._forget_if_idle()

    def _forget_if_idle(self) -> None:
        if self.idle and self.retry_at <= self.ctx.clock.seconds():
            if self._expire_call is not None and self._expire_call.active():
                self._expire_call.cancel()
            self.outgoing.forget(self)

    # -- dialback verification for the receiving side --------------------------------------

    def verify(self, local: str, stream_id: str, key: str) -> defer.Deferred[tuple[str, str | None]]:
        v = _Verify(local, stream_id, key)
        limit = self.ctx.config.connect_timeout + self.ctx.config.auth_timeout
        v.timer = self.ctx.clock.callLater(limit, self._finish_verify, v, "error", "remote-server-timeout")
        self.verifies.append(v)
        self._send_verifies()
        if v.sent_on is None and v in self.verifies:
            self._ensure(local)
        return v.result

    def stream_can_verify(self, stream: OutgoingStream) -> None:
        self._send_verifies()

    def _send_verifies(self) -> None:
        for v in self.verifies:
            if v.sent_on is not None:
                continue
            candidates = [s for s in self.streams if s.can_verify]
            stream = next((s for s in candidates if s.local == v.local), None) or next(iter(candidates), None)
            if stream is None:
                continue
            v.sent_on = stream
            stream.write(dialback.build("verify", v.local, self.remote, id=v.stream_id, key=v.key))

    def verify_answered(self, stream: OutgoingStream, frm: str | None, to: str | None, stream_id: str | None,
                        kind: str | None, condition: str | None) -> None:
        for v in self.verifies:
            if v.sent_on is stream and v.stream_id == stream_id and v.local == to and frm == self.remote:
                if kind in ("valid", "invalid"):
                    self._finish_verify(v, kind, None)
                else:
                    self._finish_verify(v, "error", condition or "remote-server-not-found")
                return

    def _finish_verify(self, v: _Verify, kind: str, condition: str | None) -> None:
        if v in self.verifies:
            self.verifies.remove(v)
        if v.timer is not None and v.timer.active():
            v.timer.cancel()
        if not v.result.called:
            v.result.callback((kind, condition))

    # -- shutdown ------------------------------------------------------------------------

    def close(self, error: StreamError) -> None:
        for stream in list(self.streams):
            stream.fail(error, StreamFailed(NOT_FOUND, "shutting down"))
        for d in list(self.rounds.values()):
            d.cancel()
        if self._expire_call is not None and self._expire_call.active():
            self._expire_call.cancel()
        for v in list(self.verifies):
            self._finish_verify(v, "error", "remote-connection-failed")
        self.queue.clear()


class Outgoing:
    """The router's default route: everything for a domain that is neither hosted
    nor a component's goes to that domain's :class:`Destination`."""

    def __init__(self, ctx: S2SContext, resolver: S2SResolver) -> None:
        self.ctx = ctx
        self.resolver = resolver
        self.destinations: dict[str, Destination] = {}
        self.stopping = False
        #: Rounds of connection attempts that failed, by the condition their
        #: stanzas bounced with, for the metrics.
        self.failures: dict[str, int] = {}

    def __call__(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        self.route(stanza, frm, to)

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        if self.stopping:
            log.debug("S2S: shutting down; dropped a <{name}/> to {to}", name=stanza.name, to=to.full())
            return
        if not self.ctx.is_local(frm.host):
            # Only our own domains originate stanzas over federation.
            log.info("S2S: dropped a <{name}/> from {frm} to {to}: not from one of our domains", name=stanza.name,
                     frm=frm.full(), to=to.full())
            return
        self.destination(to.host).send(stanza, frm, to)

    def destination(self, remote: str) -> Destination:
        dest = self.destinations.get(remote)
        if dest is None:
            dest = self.destinations[remote] = Destination(self, remote)
        return dest

    def forget(self, destination: Destination) -> None:
        if self.destinations.get(destination.remote) is destination:
            del self.destinations[destination.remote]

    def verify(self, local: str, remote: str, stream_id: str, key: str) -> defer.Deferred[tuple[str, str | None]]:
        """Ask *remote*'s authoritative server whether *key* is its key for the stream
        *stream_id* that claims to come from it to our *local*: ('valid'|'invalid'|'error',
        condition)."""
        return self.destination(remote).verify(local, stream_id, key)

    def count_failure(self, condition: str) -> None:
        self.failures[condition] = self.failures.get(condition, 0) + 1

    @property
    def queued(self) -> int:
        """Stanzas waiting for a link, all destinations together."""
        return sum(len(d.queue) for d in self.destinations.values())

    def bounce(self, stanza: domish.Element, frm: JID, to: JID, condition: str, text: str) -> None:
        self.ctx.router.bounce(stanza, frm, to, StanzaError(condition, text))

    @property
    def streams(self) -> list[OutgoingStream]:
        return [s for d in self.destinations.values() for s in d.streams]

    def close_all(self, error: StreamError) -> None:
        self.stopping = True
        for dest in list(self.destinations.values()):
            dest.close(error)


def _connect_condition(e: Exception) -> str:
    if isinstance(e, (net_error.TimeoutError, defer.TimeoutError, defer.CancelledError)):
        return TIMEOUT
    return NOT_FOUND


def _describe(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _attr(text: str) -> str:
    return domish.escapeToXml(text, isattrib=1)


