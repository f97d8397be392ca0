"""Finding a domain's server: SRV per RFC 2782 and XEP-0368, the "." target, the
5269 fallback, static routes, and addresses through twisted.names."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.names import dns

from fedxmpp.s2s.resolver import SRV, NamesHostnameResolver, NoService, ResolveError, Target, order_srv
from tests.unit.s2s.world import FakeDNS, real_resolver


def targets(resolver, domain):
    d = defer.Deferred.fromCoroutine(resolver.targets(domain))
    results = []
    d.addBoth(results.append)
    assert results, "the lookup should have finished synchronously on the fake DNS"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def srv(priority, weight, port, target):
    return dns.Record_SRV(priority, weight, port, target)


def test_both_services_are_merged_by_priority():
    """_xmpps-server (direct TLS) and _xmpp-server (STARTTLS) records form one list
    in priority order, each target keeping its kind and port."""
    fake = FakeDNS({
        "_xmpps-server._tcp.example.org": [srv(5, 0, 5270, "tls.example.org")],
        "_xmpp-server._tcp.example.org": [srv(0, 0, 15269, "a.example.org"), srv(10, 0, 5269, "b.example.org")],
    })
    got = targets(real_resolver(fake), "example.org")
    assert got == [Target("a.example.org", 15269, False), Target("tls.example.org", 5270, True),
                   Target("b.example.org", 5269, False)]


def test_dot_target_means_no_service():
    """A lone SRV record with the target "." (RFC 2782) is "no service": NoService,
    with no fallback to the domain's address on 5269."""
    fake = FakeDNS({"_xmpp-server._tcp.example.org": [srv(0, 0, 0, b"")],
                    "example.org": [dns.Record_A("192.0.2.1")]})
    with pytest.raises(NoService):
        targets(real_resolver(fake), "example.org")


def test_dot_target_for_one_service_leaves_the_other():
    """"." for _xmpps-server only says direct TLS is not offered; the STARTTLS
    records are still used."""
    fake = FakeDNS({"_xmpps-server._tcp.example.org": [srv(0, 0, 0, b"")],
                    "_xmpp-server._tcp.example.org": [srv(0, 0, 5269, "x.example.org")]})
    assert targets(real_resolver(fake), "example.org") == [Target("x.example.org", 5269, False)]


def test_no_srv_falls_back_to_the_domain_on_5269():
    """Without SRV records the domain itself is tried on port 5269 — when it has an
    address (A or AAAA)."""
    fake = FakeDNS({"example.org": [dns.Record_AAAA("2001:db8::1")]})
    assert targets(real_resolver(fake), "example.org") == [Target("example.org", 5269, False)]


def test_nothing_at_all_is_remote_server_not_found():
    """No SRV records and no address: ResolveError, whose condition is
    <remote-server-not-found/>."""
    with pytest.raises(ResolveError) as info:
        targets(real_resolver(FakeDNS()), "nowhere.example")
    assert info.value.condition == "remote-server-not-found"


def test_static_route_wins_without_any_lookup():
    """A domain in [s2s] routes goes where the route says; DNS is not asked."""
    fake = FakeDNS({"_xmpp-server._tcp.peer.test": [srv(0, 0, 5269, "elsewhere.test")]})
    resolver = real_resolver(fake, routes={"peer.test": "tcp:127.0.0.5:5269", "v6.test": "tls:[::1]:5270"})
    assert targets(resolver, "peer.test") == [Target("127.0.0.5", 5269, False)]
    assert targets(resolver, "v6.test") == [Target("::1", 5270, True)]
    assert fake.queries == []


def test_weights_order_within_a_priority():
    """RFC 2782: within one priority, a record of weight 90 comes first about 90 % of
    the time against weight 10; weight 0 comes first only rarely; lower priorities
    always come first."""
    rng = random.Random(1234)
    records = [SRV("s", 1, 90, 1, "heavy", False), SRV("s", 1, 10, 1, "light", False),
               SRV("s", 0, 0, 1, "first", False)]
    firsts = Counter()
    for _ in range(2000):
        ordered = order_srv(records, rng)
        assert ordered[0].target == "first"
        firsts[ordered[1].target] += 1
    assert 1650 < firsts["heavy"] < 1950
    zero = [SRV("s", 0, 0, 1, "zero", False), SRV("s", 0, 50, 1, "fifty", False)]
    zero_first = sum(order_srv(zero, rng)[0].target == "zero" for _ in range(2000))
    assert zero_first < 100


def test_addresses_interleave_ipv6_and_ipv4():
    """The happy-eyeballs resolver hands HostnameEndpoint IPv6 and IPv4 addresses
    alternately, IPv6 first, with the port asked for; literals need no lookup."""
    fake = FakeDNS({"h.example": [dns.Record_A("192.0.2.1"), dns.Record_A("192.0.2.2"),
                                  dns.Record_AAAA("2001:db8::1")]})
    got = []

    class Receiver:
        def resolutionBegan(self, r): pass
        def addressResolved(self, a): got.append(a)
        def resolutionComplete(self): got.append("done")

    NamesHostnameResolver(fake).resolveHostName(Receiver(), "h.example", 5269)
    assert got == [IPv6Address("TCP", "2001:db8::1", 5269), IPv4Address("TCP", "192.0.2.1", 5269),
                   IPv4Address("TCP", "192.0.2.2", 5269), "done"]
    got.clear()
    NamesHostnameResolver(fake).resolveHostName(Receiver(), "127.0.0.9", 1)
    assert got == [IPv4Address("TCP", "127.0.0.9", 1), "done"]
    assert ("127.0.0.9", "A") not in fake.queries


def test_connect_uses_the_configured_dns_for_target_addresses():
    """With nameservers configured, the connection to an SRV target resolves the
    target's name through the same DNS (not the system's): the memory reactor sees
    a TCP connection to the address the fake DNS gave."""
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.testing import MemoryReactorClock

    clock = MemoryReactorClock()
    fake = FakeDNS({"xmpp.example.org": [dns.Record_A("192.0.2.7")]})
    resolver = real_resolver(fake, clock)
    resolver.connect(Target("xmpp.example.org", 15269), Factory.forProtocol(Protocol))
    clock.advance(0)
    assert [(host, port) for host, port, *_ in clock.tcpClients] == [("192.0.2.7", 15269)]
