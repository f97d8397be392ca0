"""Failed authentications counted per client address (in the manner of ejabberd's
mod_fail2ban): each failure is answered later than the one before, and an address
with too many failures is blocked for a while.

An IPv6 address counts as its /64 (what one subscriber usually holds); the table
is bounded, the oldest addresses forgotten first.  The settings are read from
``[auth]`` at each use, so a reload changes them.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from typing import Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

# Addresses remembered at most; beyond, the least recently failed are forgotten.
MAX_ADDRESSES = 100_000
# The delay grows to at most this many times failure_delay.
MAX_DELAY_FACTOR = 8


class ThrottleSettings(Protocol):
    failure_delay: float
    block_after: int
    block_time: float


def address_key(host: str) -> str:
    """What failures are counted under: the address, or an IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthThrottle:
    """Failures per address within ``block_time`` seconds; blocked addresses."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def blocked(self, host: str) -> bool:
        key = address_key(host)
        until = self._blocked.get(key)
        if until is None:
            return False
        if until <= self.clock.seconds():
            del self._blocked[key]
            self._failures.pop(key, None)
            return False
        return True

    def failed(self, host: str, settings: ThrottleSettings) -> float:
        """Count a failed authentication from *host*; the seconds to wait before
        answering it (0 when delays are off)."""
        key = address_key(host)
        now = self.clock.seconds()
        times = self._failures.pop(key, None) or deque()
        while times and times[0] <= now - settings.block_time:
            times.popleft()
        times.append(now)
        self._failures[key] = times
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
        if len(times) >= settings.block_after and key not in self._blocked:
            self._blocked[key] = now + settings.block_time
            while len(self._blocked) > MAX_ADDRESSES:
                self._blocked.popitem(last=False)
            log.warn("Blocking authentication from {address} for {seconds:.0f} s after {n} failures",
                     address=key, seconds=settings.block_time, n=len(times))
        if settings.failure_delay <= 0:
            return 0.0
        return min(settings.failure_delay * 2 ** (len(times) - 1), settings.failure_delay * MAX_DELAY_FACTOR)
