"""``fedxmpp check DOMAIN``: what a remote server sees when it tries to reach DOMAIN.

The SRV records of both services, the addresses of every target, then for each
target a connection made the way a server makes one — stream header in
``jabber:server``, STARTTLS (or TLS from the first byte for ``_xmpps-server``),
SNI for DOMAIN — and the certificate presented: its names, its expiry, and
whether it verifies (chain against the configured CA file or the system's store,
name by DNS-ID, SRV-ID or XmppAddr).  The first thing to run when federation
fails.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.s2s import dialback
from fedxmpp.s2s.resolver import SERVICES, ResolveError, S2SResolver, Target
from fedxmpp.stream.transport import IStreamTransport
from fedxmpp.tls import PeerCheck, PeerVerifier, anonymous_client_creator, peer_chain
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.parser import StreamParser

# Seconds for one target's stream and TLS negotiation.
PROBE_TIMEOUT = 15.0


class ProbeError(Exception):
    pass


@dataclass
class Probe:
    """What one connection attempt learnt."""

    check: PeerCheck | None = None
    tls_version: str = ""
    address: str = ""


class _ProbeProtocol(Protocol):
    """Opens a server-to-server stream, negotiates TLS, records the certificate."""
    transport: IStreamTransport  # narrower than Twisted's ITransport | None; see stream/transport.py

    def __init__(self, domain: str, direct_tls: bool, verifier: PeerVerifier, done: defer.Deferred[Probe]) -> None:
        self.domain = domain
        self.tls = direct_tls
        self.verifier = verifier
        self.done = done
        self.parser: StreamParser | None = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = f"{getattr(peer, 'host', peer)} port {getattr(peer, 'port', '?')}"
        self._open()

    def _open(self) -> None:
        self.parser = StreamParser(on_stream_start=self._start, on_element=self._element,
                                   on_stream_end=lambda: self._finish(ProbeError("the server closed the stream")),
                                   max_stanza_size=262144, max_depth=32)
        self.transport.write(
            (f"<?xml version='1.0'?><stream:stream xmlns='{ns.SERVER}' xmlns:stream='{ns.STREAMS}' "
             f"xmlns:db='{dialback.NS_DIALBACK}' to='{domish.escapeToXml(self.domain, isattrib=1)}' "
             "version='1.0'>").encode())

    def dataReceived(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed(data)
        except StreamError as e:
            self._finish(ProbeError(f"the server's stream is broken: {e}"))

    def _start(self, root: domish.Element) -> None:
        if root.defaultUri != ns.SERVER:
            raise StreamError("invalid-namespace", "not a jabber:server stream")

    def _element(self, el: domish.Element) -> None:
        if el.uri == ns.STREAMS and el.name == "error":
            condition = next((c.name for c in el.elements() if c.name != "text"), "undefined-condition")
            self._finish(ProbeError(f"the server sent the stream error <{condition}/>"))
        elif el.uri == ns.STREAMS and el.name == "features":
            if self.tls:
                handle = self.transport.getHandle()
                probe = Probe(self.verifier.check(peer_chain(handle)), handle.get_protocol_version_name(),
                              self.address)
                self._finish(probe)
            elif any(c.uri == ns.TLS and c.name == "starttls" for c in el.elements()):
                self.transport.write(f"<starttls xmlns='{ns.TLS}'/>".encode())
            else:
                self._finish(ProbeError("the server does not offer STARTTLS"))
        elif el.uri == ns.TLS and el.name == "proceed":
            self.tls = True
            self.transport.startTLS(anonymous_client_creator(self.domain))
            self._open()
        elif el.uri == ns.TLS:
            self._finish(ProbeError("the server refused STARTTLS"))

    def _finish(self, result: Probe | Exception) -> None:
        if self.parser is not None:
            self.parser.stop()
            self.parser = None
        if not self.done.called:
            if isinstance(result, Exception):
                self.done.errback(result)
            else:
                self.done.callback(result)
        if self.transport is not None:
            self.transport.write(b"</stream:stream>")
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.errback(ProbeError(f"connection lost: {reason.getErrorMessage() if reason else ''}"))


class _ProbeFactory(Factory):
    def __init__(self, domain: str, direct_tls: bool, verifier: PeerVerifier) -> None:
        self.domain = domain
        self.direct_tls = direct_tls
        self.verifier = verifier
        self.done: defer.Deferred[Probe] = defer.Deferred()

    def buildProtocol(self, addr: Any) -> Protocol:
        return _ProbeProtocol(self.domain, self.direct_tls, self.verifier, self.done)


async def probe(reactor: Any, resolver: S2SResolver, verifier: PeerVerifier, domain: str, target: Target) -> Probe:
    probe_factory = _ProbeFactory(domain, target.direct_tls, verifier)
    done = probe_factory.done
    factory: IProtocolFactory = probe_factory
    if target.direct_tls:
        factory = TLSMemoryBIOFactory(anonymous_client_creator(domain, alpn=[b"xmpp-server"]), True, factory,
                                      clock=reactor)
    await resolver.connect(target, factory)

    def give_up() -> None:
        if not done.called:
            done.errback(ProbeError(f"no TLS stream within {PROBE_TIMEOUT:g} s"))

    timer = reactor.callLater(PROBE_TIMEOUT, give_up)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


async def run_check(reactor: Any, resolver: S2SResolver, verifier: PeerVerifier, domain: str,
                    say: Callable[[str], None], now: datetime.datetime | None = None) -> bool:
    """Print what a peer sees of *domain*; True when some target verifies."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    say(f"Checking server-to-server federation with {domain} (certificates judged against {verifier.source})")
    if domain in resolver.routes:
        targets = [resolver.routes[domain]]
        say(f"  static route (s2s.routes): {targets[0]}")
    else:
        records, refused = await resolver.srv_records(domain)
        for service, direct in SERVICES:
            mine = [r for r in records if r.direct_tls == direct]
            name = f"{service}.{domain}"
            if mine:
                for r in sorted(mine, key=lambda r: (r.priority, -r.weight)):
                    say(f"  SRV {name}: priority {r.priority} weight {r.weight} port {r.port} target {r.target}")
            else:
                say(f"  SRV {name}: none")
        try:
            targets = await resolver.targets(domain)
        except ResolveError as e:
            say(f"FAIL: {e}")
            return False
        if not records:
            say(f"  no SRV records: a peer tries {domain} on port 5269")
        elif refused:
            say("  (one service says '.': not offered)")
    verified = False
    for n, target in enumerate(targets, 1):
        say(f"target {n}: {target}")
        addresses = await resolver.addresses(target.host, target.port)
        if not addresses:
            say("  addresses: none (the name does not resolve)")
            continue
        say("  addresses: " + ", ".join(a.host for a in addresses))
        try:
            result = await probe(reactor, resolver, verifier, domain, target)
        except Exception as e:
            say(f"  cannot connect or negotiate TLS: {_describe(e)}")
            continue
        say(f"  connected to {result.address}, {result.tls_version}")
        check = result.check
        if check is None or check._certificate is None:
            say("  certificate: none presented")
            continue
        say(f"  certificate names: {', '.join(check.names) or '(none)'}")
        if check.not_after is not None:
            left = (check.not_after - now).days
            state = "EXPIRED" if check.not_after < now else f"in {left} days"
            say(f"  expires: {check.not_after.strftime('%Y-%m-%d %H:%M UTC')} ({state})")
        say(f"  chain: {'verifies' if check.chain_ok else 'does NOT verify: ' + check.problem}")
        names_it = check.valid_for(domain) if check.chain_ok else _names(check, domain)
        say(f"  name: {'covers' if names_it else 'does NOT cover'} {domain}")
        if check.chain_ok and names_it:
            say("  OK: a peer that checks certificates accepts this server (SASL EXTERNAL possible)")
            verified = True
        else:
            say("  NOT VERIFIED: peers that check certificates refuse it; others may fall back to dialback")
    say(f"result: {domain} {'is reachable with a certificate that verifies' if verified else 'FAILS verification'}")
    return verified


def _names(check: PeerCheck, domain: str) -> bool:
    """Whether the certificate names *domain*, whatever its chain."""
    return PeerCheck(True, "", check.names, check.not_after, check._certificate).valid_for(domain)


def _describe(e: Exception) -> str:
    text = str(e).strip()
    return text or type(e).__name__
