"""Streams that remote servers open to us (RFC 6120 from the receiving side).

A :class:`~fedxmpp.stream.xmlstream.ServerStream` in ``jabber:server`` owns the
socket; :class:`IncomingHandler` gives it its meaning:

* features: ``<starttls/>`` (required by default), then SASL EXTERNAL when the
  peer presented a certificate that verifies for the domain in its header's
  'from' (XEP-0178), and dialback with error support (XEP-0220 §2.4.2);
* ``<db:result/>``: the peer claims a domain; we ask that domain's authoritative
  server over a separate ``<db:verify/>`` connection (the outgoing side), and
  answer valid, invalid (then close: a forger), or a dialback error.  Several
  domain pairs may be authenticated on one stream (multiplexing);
* ``<db:verify/>``: another server asks whether a key is ours; answered at once;
* stanzas: accepted only once authenticated, with a 'from' whose domain this
  stream authenticated for the 'to' domain (else ``<invalid-from/>``), a 'to' that
  is ours (else ``<host-unknown/>``), both present (else
  ``<improper-addressing/>``); then handed to the router.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.s2s import dialback
from fedxmpp.stream.shaper import shaper
from fedxmpp.stream.xmlstream import ServerStream, duration, end_reason
from fedxmpp.tls import PeerCheck, peer_chain
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID, prep_domain

if TYPE_CHECKING:
    from fedxmpp.s2s.context import S2SContext
    from fedxmpp.s2s.outgoing import Outgoing

log = Logger()

STANZAS = frozenset({"message", "presence", "iq"})
IQ_TYPES = frozenset({"get", "set", "result", "error"})
ALPN = b"xmpp-server"
# Dialback requests one stream may have waiting for their authoritative servers.
MAX_PENDING = 32


class S2SServerStream(ServerStream):
    """A server stream whose header declares the dialback prefix."""

    header_prefixes = (("db", dialback.NS_DIALBACK),)


class IncomingHandler:
    """The meaning of one stream a remote server opened to us."""

    def __init__(self, ctx: S2SContext, outgoing: Outgoing) -> None:
        self.ctx = ctx
        self.outgoing = outgoing
        self.tls = False
        self.peer: PeerCheck | None = None
        self.header_from: str | None = None
        self.sasl_done = False
        # (remote domain, our domain) pairs this stream may carry stanzas for.
        self.authed: set[tuple[str, str]] = set()
        self.pending: set[tuple[str, str]] = set()
        self.closed = False

    # -- StreamHandler ---------------------------------------------------------------------

    def stream_opened(self, stream: ServerStream, root: domish.Element) -> str:
        if interfaces.ISSLTransport.providedBy(stream.transport) and not self.tls:
            self.tls = True
            self.peer = self.ctx.verifier.check(peer_chain(stream.transport.getHandle()))
        to = root.getAttribute("to")
        if not to:
            raise StreamError("host-unknown", "The stream header names no domain ('to')")
        try:
            local = prep_domain(to)
        except InvalidJID:
            raise StreamError("host-unknown", "Not a domain") from None
        if not self.ctx.is_local(local):
            raise StreamError("host-unknown", "This server does not serve that domain")
        frm = root.getAttribute("from")
        if frm:
            try:
                self.header_from = prep_domain(frm)
            except InvalidJID:
                raise StreamError("invalid-from", "The stream header's 'from' is not a domain") from None
        return local

    def features(self, stream: ServerStream) -> domish.Element:
        cfg = self.ctx.config
        features = domish.Element((ns.STREAMS, "features"))
        if not self.tls:
            tls = features.addElement((ns.TLS, "starttls"))
            if cfg.require_encryption:
                tls.addElement("required")
                return features
        elif not self.sasl_done and self.header_from and self.peer is not None \
                and self.peer.valid_for(self.header_from):
            features.addElement((ns.SASL, "mechanisms")).addElement("mechanism", content="EXTERNAL")
        features.addElement((dialback.NS_FEATURE, "dialback")).addElement("errors")
        return features

    def element_received(self, stream: ServerStream, element: domish.Element) -> None:
        uri = element.uri
        if uri == ns.SERVER and element.name in STANZAS:
            self._stanza(stream, element)
        elif uri == dialback.NS_DIALBACK and element.name == "result":
            self._db_result(stream, element)
        elif uri == dialback.NS_DIALBACK and element.name == "verify":
            self._db_verify(stream, element)
        elif uri == ns.TLS and element.name == "starttls":
            self._starttls(stream)
        elif uri == ns.SASL:
            self._sasl(stream, element)
        elif uri == ns.STREAMS and element.name == "error":
            condition = next((c.name for c in element.elements() if c.uri == ns.STREAM_ERRORS and c.name != "text"),
                             "undefined-condition")
            log.info("S2S incoming stream from {peer}: the peer sent the stream error {condition}",
                     peer=self.header_from or _peer_host(stream), condition=condition)
            stream.close()
        else:
            stream.fail(StreamError("unsupported-stanza-type", f"<{element.name}/> is not expected here"))

    def stream_closing(self, stream: ServerStream) -> None:
        pass  # routes go when the connection does (stream_closed)

    def stream_closed(self, stream: ServerStream, reason: Failure) -> None:
        self.closed = True
        remotes = ", ".join(sorted({r for r, _ in self.authed})) or self.header_from or "an unauthenticated server"
        peer = stream.transport.getPeer()
        log.info("S2S incoming stream from {remotes} ({peer}) ended ({why}) after {duration:.1f} s",
                 remotes=remotes, peer=getattr(peer, "host", str(peer)), why=end_reason(stream, "the remote server"),
                 duration=duration(stream))

    # -- STARTTLS and SASL EXTERNAL -----------------------------------------------------------

    def _starttls(self, stream: ServerStream) -> None:
        if self.tls:
            stream.fail(StreamError("policy-violation", "TLS is already in place"))
            return
        stream.write(f"<proceed xmlns='{ns.TLS}'/>")
        # The header named the domain: its certificate, also for peers that send no SNI.
        stream.transport.startTLS(self.ctx.certificates.server_creator(request_client_cert=True,
                                                                       domain=stream.domain))
        stream.restart()

    def _sasl(self, stream: ServerStream, element: domish.Element) -> None:
        if element.name != "auth":
            if element.name == "abort":
                self._sasl_failure(stream, "aborted")
            else:
                stream.fail(StreamError("policy-violation", "Unexpected SASL element"))
            return
        if not self.tls:
            self._sasl_failure(stream, "encryption-required")
            return
        if self.sasl_done or element.getAttribute("mechanism") != "EXTERNAL":
            self._sasl_failure(stream, "invalid-mechanism")
            return
        text = str(element).strip()
        try:
            authzid = "" if text in ("", "=") else base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            self._sasl_failure(stream, "incorrect-encoding")
            return
        claimed = self.header_from
        if authzid:
            try:
                authz_domain = prep_domain(authzid)
            except InvalidJID:
                self._sasl_failure(stream, "invalid-authzid")
                return
            if claimed is not None and authz_domain != claimed:
                self._sasl_failure(stream, "invalid-authzid")
                return
            claimed = authz_domain
        if not claimed or self.ctx.is_local(claimed) or self.peer is None or not self.peer.valid_for(claimed):
            self._sasl_failure(stream, "not-authorized")
            return
        assert stream.domain is not None
        self.sasl_done = True
        self.header_from = claimed
        self._authenticated(stream, claimed, stream.domain, "SASL EXTERNAL")
        stream.write(f"<success xmlns='{ns.SASL}'/>")
        stream.restart()

    def _sasl_failure(self, stream: ServerStream, condition: str) -> None:
        log.info("S2S incoming from {peer}: SASL EXTERNAL refused ({condition})",
                 peer=self.header_from or _peer_host(stream), condition=condition)
        stream.write(f"<failure xmlns='{ns.SASL}'><{condition}/></failure>")

    # -- dialback ------------------------------------------------------------------------------

    def _db_addresses(self, stream: ServerStream, element: domish.Element) -> tuple[str, str] | None:
        frm, to = element.getAttribute("from"), element.getAttribute("to")
        if not frm or not to:
            stream.fail(StreamError("improper-addressing", "Dialback needs 'from' and 'to'"))
            return None
        try:
            return prep_domain(frm), prep_domain(to)
        except InvalidJID:
            stream.fail(StreamError("improper-addressing", "Dialback addresses must be domains"))
            return None

    def _db_result(self, stream: ServerStream, element: domish.Element) -> None:
        if element.getAttribute("type") is not None:
            return  # answers belong on our own streams, not here
        addresses = self._db_addresses(stream, element)
        if addresses is None:
            return
        remote, local = addresses
        cfg = self.ctx.config

        def refuse(condition: str) -> None:
            stream.write(dialback.build("result", local, remote, type="error", error=condition))

        if not self.ctx.is_local(local):
            refuse("item-not-found")
            return
        if self.ctx.is_local(remote):
            log.warn("S2S incoming: {peer} claims to be {remote}, one of our own domains", peer=_peer_host(stream),
                     remote=remote)
            refuse("not-authorized")
            return
        if cfg.require_encryption and not self.tls:
            refuse("policy-violation")
            return
        if cfg.verify_certificates and (self.peer is None or not self.peer.valid_for(remote)):
            reason = "no certificate" if self.peer is None else (self.peer.problem or f"it does not name {remote}")
            log.info("S2S incoming: refused dialback for {remote} -> {local}: its certificate does not verify "
                     "({reason}) and verify_certificates is on", remote=remote, local=local, reason=reason)
            refuse("not-authorized")
            return
        pair = (remote, local)
        if pair in self.authed:
            stream.write(dialback.build("result", local, remote, type="valid"))
            return
        if pair in self.pending:
            return
        if len(self.pending) >= MAX_PENDING:
            refuse("policy-violation")
            return
        key = str(element).strip()
        if not key or len(key) > dialback.MAX_KEY:
            stream.write(dialback.build("result", local, remote, type="invalid"))
            return
        self.pending.add(pair)
        stream_id = stream.stream_id
        d = self.outgoing.verify(local, remote, stream_id, key)
        d.addCallback(self._verified, stream, remote, local, stream_id)
        d.addErrback(self._verify_crashed, stream, remote, local)

    def _verified(self, answer: tuple[str, str | None], stream: ServerStream, remote: str, local: str,
                  stream_id: str) -> None:
        self.pending.discard((remote, local))
        if stream.closed or self.closed or stream.stream_id != stream_id:
            return
        kind, condition = answer
        if kind == "valid":
            self._authenticated(stream, remote, local, "dialback")
            stream.write(dialback.build("result", local, remote, type="valid"))
        elif kind == "invalid":
            log.warn("S2S incoming: the authoritative server of {remote} says the dialback key from {peer} is "
                     "not its own (a forgery?); closing", remote=remote, peer=_peer_host(stream))
            stream.write(dialback.build("result", local, remote, type="invalid"))
            stream.fail(StreamError("not-authorized", f"Dialback for {remote} failed"))
        else:
            log.info("S2S incoming: cannot verify dialback for {remote} -> {local}: <{condition}/>",
                     remote=remote, local=local, condition=condition)
            stream.write(dialback.build("result", local, remote, type="error", error=condition))

    def _verify_crashed(self, failure: Failure, stream: ServerStream, remote: str, local: str) -> None:
        log.failure("S2S incoming: dialback verification for {remote} crashed", failure, remote=remote)
        self.pending.discard((remote, local))
        if not stream.closed:
            stream.write(dialback.build("result", local, remote, type="error", error="internal-server-error"))

    def _db_verify(self, stream: ServerStream, element: domish.Element) -> None:
        if element.getAttribute("type") is not None:
            return
        addresses = self._db_addresses(stream, element)
        if addresses is None:
            return
        receiving, ours = addresses
        stream_id = element.getAttribute("id") or ""
        if not self.ctx.is_local(ours):
            answer = dialback.build("verify", ours, receiving, id=stream_id, type="error", error="item-not-found")
        elif self.ctx.config.require_encryption and not self.tls:
            answer = dialback.build("verify", ours, receiving, id=stream_id, type="error", error="policy-violation")
        else:
            valid = bool(stream_id) and self.ctx.keys.check(receiving, ours, stream_id, str(element))
            if not valid:
                log.info("S2S incoming: {receiving} asked about a dialback key for {ours} that is not ours",
                         receiving=receiving, ours=ours)
            answer = dialback.build("verify", ours, receiving, id=stream_id, type="valid" if valid else "invalid")
        stream.write(answer)

    def _authenticated(self, stream: ServerStream, remote: str, local: str, how: str) -> None:
        first = not self.authed
        self.authed.add((remote, local))
        if first:
            stream.negotiated()
        log.info("S2S {remote} -> {local}: incoming stream authenticated with {how}", remote=remote, local=local,
                 how=how)

    # -- stanzas -------------------------------------------------------------------------------

    def _stanza(self, stream: ServerStream, element: domish.Element) -> None:
        if not self.authed:
            stream.fail(StreamError("not-authorized", "Authenticate first"))
            return
        frm_attr, to_attr = element.getAttribute("from"), element.getAttribute("to")
        if not frm_attr or not to_attr:
            stream.fail(StreamError("improper-addressing", "Stanzas between servers need 'from' and 'to'"))
            return
        try:
            frm = JID.parse(frm_attr)
        except InvalidJID:
            stream.fail(StreamError("invalid-from", "'from' is not a valid address"))
            return
        try:
            to = JID.parse(to_attr)
        except InvalidJID:
            if (frm.host, stream.domain) in self.authed and element.getAttribute("type") != "error":
                reply = error_reply(element, StanzaError("jid-malformed", "'to' is not a valid address"))
                reply["from"] = stream.domain or ""
                self.ctx.router.route(reply, JID(None, stream.domain or ""), frm)
            return
        if not self.ctx.is_local(to.host):
            stream.fail(StreamError("host-unknown", f"This server does not serve {to.host}"))
            return
        if (frm.host, to.host) not in self.authed:
            stream.fail(StreamError("invalid-from", f"{frm.host} is not authenticated on this stream for {to.host}"))
            return
        if element.name == "iq":
            stype = element.getAttribute("type")
            if stype not in IQ_TYPES or not element.getAttribute("id"):
                if stype != "error":
                    self.ctx.router.bounce(element, frm, to, StanzaError("bad-request",
                                                                         "An iq needs an 'id' and a valid 'type'"))
                return
        element["from"] = frm.full()
        element["to"] = to.full()
        self.ctx.router.route(element, frm, to)


class IncomingFactory(Factory):
    """Builds the stream of every connection a remote server opens, and remembers
    the live ones so that shutdown can close them."""

    def __init__(self, ctx: S2SContext, outgoing: Outgoing) -> None:
        self.ctx = ctx
        self.outgoing = outgoing
        self.streams: set[ServerStream] = set()

    def buildProtocol(self, addr: Any) -> Protocol:
        cfg = self.ctx.config
        stream = S2SServerStream(IncomingHandler(self.ctx, self.outgoing), content_ns=ns.SERVER,
                                 limits=self.ctx.limits, clock=self.ctx.clock,
                                 negotiation_timeout=cfg.auth_timeout, idle_timeout=cfg.idle_timeout,
                                 on_lost=self.streams.discard,
                                 shaper=shaper(self.ctx.limits.s2s_rate, self.ctx.limits.s2s_burst, self.ctx.clock))
        stream.factory = self
        self.streams.add(stream)
        return stream


def direct_tls_factory(factory: IncomingFactory) -> TLSMemoryBIOFactory:
    """Wrap *factory* in TLS from the first byte (XEP-0368), ALPN 'xmpp-server',
    asking for the peer's certificate."""
    creator = factory.ctx.certificates.server_creator(alpn=[ALPN], request_client_cert=True)
    return TLSMemoryBIOFactory(creator, False, factory, clock=factory.ctx.clock)


def _peer_host(stream: ServerStream) -> str:
    peer = stream.transport.getPeer()
    return getattr(peer, "host", str(peer))
