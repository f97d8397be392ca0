"""Connections admitted per client address (fedxmpp.stream.admission)."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from fedxmpp.config import Config, LimitsConfig
from fedxmpp.stream.admission import Admission, Refused
from tests.unit.fakes import build_server
from tests.unit.storage.fakes import MemoryStorage


@dataclass
class Settings:
    max_connections_per_address: int = 3
    connection_rate_per_address: float = 0.0
    connection_burst_per_address: int = 10
    exempt_addresses: tuple[str, ...] = ()


def test_open_connections_per_address_are_bounded_and_released():
    admission = Admission(Clock(), "client")
    keys = [admission.admit("192.0.2.1", Settings()) for _ in range(3)]
    assert None not in keys
    assert admission.admit("192.0.2.1", Settings()) is None
    assert admission.admit("192.0.2.2", Settings()) is not None  # another address
    admission.release(keys[0])
    assert admission.admit("192.0.2.1", Settings()) is not None
    assert admission.refused == 1


def test_new_connections_per_second_after_a_burst():
    clock = Clock()
    admission = Admission(clock, "client")
    settings = Settings(max_connections_per_address=0, connection_rate_per_address=2.0,
                        connection_burst_per_address=4)
    assert [admission.admit("2001:db8::1", settings) is not None for _ in range(5)] == [True] * 4 + [False]
    # The same /64 shares the bucket.
    assert admission.admit("2001:db8::2", settings) is None
    clock.advance(0.5)
    assert admission.admit("2001:db8::3", settings) is not None
    assert admission.admit("2001:db8::3", settings) is None


def test_exempt_networks_are_not_counted():
    admission = Admission(Clock(), "client")
    settings = Settings(max_connections_per_address=1, exempt_addresses=("127.0.0.0/8", "::1/128"))
    assert [admission.admit("127.0.0.1", settings) for _ in range(5)] == [""] * 5
    assert admission.admit("::ffff:127.0.0.2", settings) == ""
    assert admission.admit("192.0.2.1", settings) is not None
    assert admission.admit("192.0.2.1", settings) is None


def test_the_client_listener_refuses_over_the_bound_and_counts_ends():
    cfg = Config(limits=LimitsConfig(max_connections_per_address=2, exempt_addresses=()))
    server = build_server(cfg, storage=MemoryStorage())
    factory = server.c2s_factory
    addr = IPv4Address("TCP", "198.51.100.7", 40000)
    streams = [factory.buildProtocol(addr) for _ in range(2)]
    for stream in streams:
        stream.makeConnection(StringTransport())
    refused = factory.buildProtocol(addr)
    assert isinstance(refused, Refused)
    transport = StringTransport()
    transport.abortConnection = lambda: setattr(transport, "aborted", True)  # type: ignore[method-assign]
    refused.makeConnection(transport)
    assert getattr(transport, "aborted", False)
    streams[0].connectionLost(None)
    assert not isinstance(factory.buildProtocol(addr), Refused)
