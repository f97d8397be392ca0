"""Where a domain's XMPP server is (RFC 6120 §3.2, RFC 2782, XEP-0368).

:meth:`S2SResolver.targets` answers with the places to try, in order:

1. a static route from ``[s2s] routes``, when the operator configured one;
2. else the SRV records of ``_xmpps-server._tcp.DOMAIN`` (TLS from the first byte)
   and ``_xmpp-server._tcp.DOMAIN`` (STARTTLS), merged and ordered by priority,
   then weighted-randomly within a priority (RFC 2782).  A single record with the
   target "." says the service is not offered: :class:`NoService`;
3. else, when neither name has records, the domain itself on port 5269.

:meth:`S2SResolver.connect` opens a TCP connection to one target with
``HostnameEndpoint``: every address of the target name, IPv6 and IPv4 interleaved
and tried with a short stagger (happy eyeballs, RFC 8305).  With
``[s2s] nameservers`` set, SRV *and* address lookups go to those servers (a
``twisted.names`` client); otherwise SRV lookups use the system's resolv.conf and
address lookups the system's resolver (getaddrinfo, so /etc/hosts counts).

The reactor and the DNS resolver are injected, so tests drive both with fakes.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

from twisted.internet import defer, interfaces
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger
from twisted.names import dns, error as dns_error
from twisted.names.client import Resolver
from twisted.python.failure import Failure
from zope.interface import implementer

from fedxmpp.config import parse_nameserver, parse_route

log = Logger()

DEFAULT_PORT = 5269
SERVICES = (("_xmpps-server._tcp", True), ("_xmpp-server._tcp", False))
# Seconds before each retransmission of a DNS query (at most ~9 s per lookup).
DNS_TIMEOUTS = (1, 3, 5)
# RFC 8305 §5: the stagger between connection attempts to successive addresses.
ATTEMPT_DELAY = 0.25


@dataclass(frozen=True)
class Target:
    """One place a remote server may listen: *host* (a name or an address) and
    *port*; *direct_tls* for XEP-0368 (TLS from the first byte)."""

    host: str
    port: int
    direct_tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}{' (direct TLS)' if self.direct_tls else ''}"


@dataclass(frozen=True)
class SRV:
    """An SRV record as the resolver saw it (for ordering and for ``fedxmpp check``)."""

    service: str
    priority: int
    weight: int
    port: int
    target: str
    direct_tls: bool


class ResolveError(Exception):
    """The domain has no reachable XMPP service; *condition* is the stanza error."""

    condition = "remote-server-not-found"


class NoService(ResolveError):
    """The domain's SRV records say "." — it offers no server-to-server service."""


def route_target(description: str) -> Target:
    """The :class:`Target` of an ``[s2s] routes`` value (validated by the config)."""
    direct_tls, host, port = parse_route(description)
    return Target(host, port, direct_tls)


def order_srv(records: Sequence[SRV], rng: random.Random | None = None) -> list[SRV]:
    """RFC 2782: ascending priority; within a priority, a weighted random order in
    which records of weight 0 come first in the pool (so they are rarely chosen early
    when others have weight)."""
    rng = rng or random.Random()
    out: list[SRV] = []
    for priority in sorted({r.priority for r in records}):
        pool = [r for r in records if r.priority == priority]
        pool.sort(key=lambda r: r.weight != 0)
        while pool:
            total = sum(r.weight for r in pool)
            pick = rng.randint(0, total) if total else 0
            running = 0
            for i, r in enumerate(pool):
                running += r.weight
                if running >= pick:
                    out.append(pool.pop(i))
                    break
    return out


class S2SResolver:
    """Finds and connects to the servers of remote domains.

    *dns* is a ``twisted.names`` resolver for SRV lookups (and for addresses too when
    *own_addresses*); *routes* the static table, domain → ``tcp:HOST:PORT``.
    """

    def __init__(self, reactor: Any, dns_resolver: Any, *, routes: Mapping[str, str] | None = None,
                 own_addresses: bool = False, connect_timeout: float = 10.0,
                 rng: random.Random | None = None) -> None:
        self.reactor = reactor
        self.dns = dns_resolver
        self.routes = {domain: route_target(desc) for domain, desc in (routes or {}).items()}
        self.connect_timeout = connect_timeout
        self.rng = rng or random.Random()
        self._endpoint_reactor = _NamesReactor(reactor, dns_resolver) if own_addresses else reactor

    @classmethod
    def from_config(cls, reactor: Any, *, nameservers: Iterable[str], routes: Mapping[str, str],
                    connect_timeout: float) -> S2SResolver:
        servers = [parse_nameserver(text) for text in nameservers]
        if servers:
            dns_resolver = Resolver(servers=servers, reactor=reactor, timeout=DNS_TIMEOUTS)
        else:
            dns_resolver = Resolver(resolv="/etc/resolv.conf", reactor=reactor, timeout=DNS_TIMEOUTS)
        return cls(reactor, dns_resolver, routes=routes, own_addresses=bool(servers),
                   connect_timeout=connect_timeout)

    # -- lookups -------------------------------------------------------------------------

    async def srv_records(self, domain: str) -> tuple[list[SRV], bool]:
        """Both services' SRV records, and whether either said "." (no service)."""
        lookups = [defer.Deferred.fromCoroutine(self._srv(f"{service}.{domain}", direct))
                   for service, direct in SERVICES]
        results = await defer.gatherResults(lookups)
        records: list[SRV] = []
        refused = False
        for found in results:
            if len(found) == 1 and found[0].target in ("", "."):
                refused = True
            else:
                records.extend(r for r in found if r.target not in ("", "."))
        return records, refused

    async def _srv(self, name: str, direct_tls: bool) -> list[SRV]:
        try:
            answers, _authority, _additional = await self.dns.lookupService(name)
        except (dns_error.DNSNameError, dns_error.DNSQueryRefusedError):
            return []
        except (dns_error.DomainError, dns_error.DNSServerError, dns_error.DNSQueryTimeoutError,
                defer.TimeoutError, dns_error.DNSUnknownError, dns_error.DNSFormatError,
                dns_error.DNSNotImplementedError) as e:
            log.info("SRV lookup of {name} failed ({error}); falling back to the domain's addresses",
                     name=name, error=type(e).__name__)
            return []
        out = []
        for rr in answers:
            if rr.type == dns.SRV:
                p = rr.payload
                target = p.target.name.decode("ascii", "replace").rstrip(".").lower() or "."
                out.append(SRV(name, p.priority, p.weight, p.port, target, direct_tls))
        return out

    async def targets(self, domain: str) -> list[Target]:
        """The places to try for *domain*, in order.  Raises :class:`ResolveError`."""
        route = self.routes.get(domain)
        if route is not None:
            return [route]
        records, refused = await self.srv_records(domain)
        if records:
            return [Target(r.target, r.port, r.direct_tls) for r in order_srv(records, self.rng)]
        if refused:
            raise NoService(f"{domain} says it offers no server-to-server service (SRV target '.')")
        if not await self._has_address(domain):
            raise ResolveError(f"{domain} has neither SRV records nor addresses")
        return [Target(domain, DEFAULT_PORT, False)]

    async def _has_address(self, domain: str) -> bool:
        """Whether *domain* resolves to any address (so an unknown domain fails fast
        instead of after a connection attempt)."""
        addresses = await self.addresses(domain)
        return bool(addresses)

    async def addresses(self, host: str, port: int = 0) -> list[IPv4Address | IPv6Address]:
        """Every address of *host*, as the connection attempts would see them."""
        receiver = _Collect()
        resolver = interfaces.IReactorPluggableNameResolver(self._endpoint_reactor).nameResolver \
            if interfaces.IReactorPluggableNameResolver.providedBy(self._endpoint_reactor) else None
        if resolver is None:
            return []
        resolver.resolveHostName(receiver, host, port)
        return await receiver.done

    # -- connecting ----------------------------------------------------------------------

    def connect(self, target: Target, factory: interfaces.IProtocolFactory) -> defer.Deferred[interfaces.IProtocol]:
        """Connect *factory*'s protocol to *target* (every address, happy eyeballs)."""
        endpoint = HostnameEndpoint(self._endpoint_reactor, target.host, target.port,
                                    timeout=self.connect_timeout, attemptDelay=ATTEMPT_DELAY)
        return endpoint.connect(factory)


# -- addresses through twisted.names ---------------------------------------------------------

@implementer(interfaces.IResolutionReceiver)
class _Collect:
    """An IResolutionReceiver gathering addresses into a Deferred list."""

    def __init__(self) -> None:
        self.found: list[Any] = []
        self.done: defer.Deferred[list[Any]] = defer.Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.found.append(address)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


@implementer(interfaces.IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:  # pragma: no cover - HostnameEndpoint never cancels
        pass


@implementer(interfaces.IHostnameResolver)
class NamesHostnameResolver:
    """Addresses (A and AAAA) from a ``twisted.names`` resolver, IPv6 and IPv4
    interleaved, for ``HostnameEndpoint``."""

    def __init__(self, dns_resolver: Any) -> None:
        self.dns = dns_resolver

    def resolveHostName(self, resolutionReceiver: Any, hostName: str, portNumber: int = 0,
                        addressTypes: Sequence[type] | None = None,
                        transportSemantics: str = "TCP") -> interfaces.IHostResolution:
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        types = addressTypes or (IPv4Address, IPv6Address)
        semantics: Literal["TCP", "UDP"] = "UDP" if transportSemantics == "UDP" else "TCP"
        try:
            literal = ipaddress.ip_address(hostName)
        except ValueError:
            literal = None
        if literal is not None:
            if literal.version == 4 and IPv4Address in types:
                resolutionReceiver.addressResolved(IPv4Address(semantics, str(literal), portNumber))
            elif literal.version == 6 and IPv6Address in types:
                resolutionReceiver.addressResolved(IPv6Address(semantics, str(literal), portNumber))
            resolutionReceiver.resolutionComplete()
            return resolution

        def lookup(method: Any) -> defer.Deferred[list[Any]]:
            d = defer.maybeDeferred(method, hostName)
            d.addCallbacks(lambda result: list(result[0]), lambda _f: [])
            return d

        lookups = [lookup(self.dns.lookupIPV6Address) if IPv6Address in types else defer.succeed([]),
                   lookup(self.dns.lookupAddress) if IPv4Address in types else defer.succeed([])]

        def deliver(results: list[list[Any]]) -> None:
            v6 = [IPv6Address(semantics, socket.inet_ntop(socket.AF_INET6, rr.payload.address), portNumber)
                  for rr in results[0] if rr.type == dns.AAAA]
            v4 = [IPv4Address(semantics, rr.payload.dottedQuad(), portNumber)
                  for rr in results[1] if rr.type == dns.A]
            for i in range(max(len(v6), len(v4))):
                for family in (v6, v4):
                    if i < len(family):
                        resolutionReceiver.addressResolved(family[i])
            resolutionReceiver.resolutionComplete()

        def failed(failure: Failure) -> None:  # pragma: no cover - lookup() swallows errors
            log.failure("Address lookup of {name} failed", failure, name=hostName)
            resolutionReceiver.resolutionComplete()

        defer.gatherResults(lookups).addCallbacks(deliver, failed)
        return resolution


@implementer(interfaces.IReactorPluggableNameResolver)
class _NamesReactor:
    """The reactor, with address lookups going to our DNS resolver."""

    def __init__(self, reactor: Any, dns_resolver: Any) -> None:
        self._reactor = reactor
        self.nameResolver = NamesHostnameResolver(dns_resolver)

    def installNameResolver(self, resolver: Any) -> Any:  # pragma: no cover - interface only
        # This view exists only to give HostnameEndpoint our resolver; swapping it
        # would silently bypass the configured nameservers.
        raise TypeError("the federation reactor view has a fixed name resolver")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)
