"""Connections admitted per client address: how many at once, and how fast new
ones may come (a token bucket per address).  A connection over either bound is
closed at accept, before any TLS or XML work is spent on it.

An IPv6 address counts as its /64, as for failed logins.  Addresses in the
exempt networks (loopback by default: local tools, a reverse proxy on the same
host) are not counted.  The settings are read at each accept, so a reload
changes them.  The table is bounded; the least recently seen idle addresses are
forgotten first.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

log = Logger()

MAX_ADDRESSES = 100_000
# A refused address is logged at most once per this many seconds.
LOG_EVERY = 60.0





def address_key(host: str) -> str:
    """What an address is counted under: the address, or an IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AdmissionSettings(TypingProtocol):
    @property
    def max_connections_per_address(self) -> int: ...
    @property
    def connection_rate_per_address(self) -> float: ...
    @property
    def connection_burst_per_address(self) -> int: ...
    @property
    def exempt_addresses(self) -> tuple[str, ...]: ...


class _Address:
    __slots__ = ("open", "tokens", "refilled", "logged")

    def __init__(self, tokens: float, now: float) -> None:
        self.open = 0
        self.tokens = tokens
        self.refilled = now
        self.logged = -LOG_EVERY


class Admission:
    """Counts the open connections of each address and its rate of new ones."""

    def __init__(self, clock: IReactorTime, kind: str) -> None:
        self.clock = clock
        self.kind = kind
        self.refused = 0
        self._addresses: OrderedDict[str, _Address] = OrderedDict()
        self._exempt_text: tuple[str, ...] = ()
        self._exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def admit(self, host: str, settings: AdmissionSettings) -> str | None:
        """Count a new connection from *host*: the key to :meth:`release` when it
        ends (``""`` when it was not counted), or None when it must be refused."""
        if self._is_exempt(host, settings.exempt_addresses):
            return ""
        key = address_key(host)
        now = self.clock.seconds()
        entry = self._addresses.pop(key, None)
        burst = settings.connection_burst_per_address
        if entry is None:
            entry = _Address(burst, now)
        rate = settings.connection_rate_per_address
        if rate > 0:
            entry.tokens = min(burst, entry.tokens + (now - entry.refilled) * rate)
        entry.refilled = now
        self._addresses[key] = entry
        self._forget_idle()
        limit = settings.max_connections_per_address
        if limit > 0 and entry.open >= limit:
            self._refuse(key, entry, now, f"{entry.open} connections open")
            return None
        if rate > 0:
            if entry.tokens < 1:
                self._refuse(key, entry, now, f"more than {rate:g} new connections per second")
                return None
            entry.tokens -= 1
        entry.open += 1
        return key

    def release(self, key: str) -> None:
        """A connection admitted under *key* ended."""
        if not key:
            return
        entry = self._addresses.get(key)
        if entry is not None and entry.open > 0:
            entry.open -= 1

    def open_connections(self, host: str) -> int:
        entry = self._addresses.get(address_key(host))
        return entry.open if entry is not None else 0

    def _refuse(self, key: str, entry: _Address, now: float, why: str) -> None:
        self.refused += 1
        if now - entry.logged >= LOG_EVERY:
            entry.logged = now
            log.warn("Refusing {kind} connections from {address}: {why}", kind=self.kind, address=key, why=why)

    def _forget_idle(self) -> None:
        checked = 0
        while len(self._addresses) > MAX_ADDRESSES and checked < len(self._addresses):
            key, entry = self._addresses.popitem(last=False)
            if entry.open:
                # Still in use: keep counting it.
                self._addresses[key] = entry
                checked += 1

    def _is_exempt(self, host: str, exempt: tuple[str, ...]) -> bool:
        if exempt != self._exempt_text:
            self._exempt_text = exempt
            self._exempt = tuple(ipaddress.ip_network(text, strict=False) for text in exempt)
        if not self._exempt:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._exempt)


class Refused(Protocol):
    """What a refused connection gets: closed at once, nothing read."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]
