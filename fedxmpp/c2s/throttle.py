"""Failed authentications counted per client address (in the manner of ejabberd's
mod_fail2ban) and per account: each failure is answered later than the one
before, and an address, or an account, with too many failures is blocked for a
while.

An account's block stops password guessing spread over many addresses.  So that
it cannot lock the owner out, it does not apply to an address that has logged in
to that account before (while this process remembers it).

An IPv6 address counts as its /64 (what one subscriber usually holds); the tables
are bounded, the oldest entries forgotten first.  The settings are read from
``[auth]`` at each use, so a reload changes them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fedxmpp.stream.admission import address_key

__all__ = ["AuthThrottle", "address_key"]

log = Logger()

# Addresses remembered at most; beyond, the least recently failed are forgotten.
MAX_ADDRESSES = 100_000
# The delay grows to at most this many times failure_delay.
MAX_DELAY_FACTOR = 8
# Addresses remembered as having logged in to an account, for how long.
TRUSTED_FOR = 30 * 86_400


class ThrottleSettings(Protocol):
    failure_delay: float
    block_after: int
    block_time: float
    account_block_after: int


class _Counter:
    """Failures per key within ``block_time`` seconds, and the keys blocked."""

    def __init__(self) -> None:
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.blocked: OrderedDict[str, float] = OrderedDict()

    def is_blocked(self, key: str, now: float) -> bool:
        until = self.blocked.get(key)
        if until is None:
            return False
        if until <= now:
            del self.blocked[key]
            self.failures.pop(key, None)
            return False
        return True

    def count(self, key: str, now: float, block_time: float) -> int:
        times = self.failures.pop(key, None) or deque()
        while times and times[0] <= now - block_time:
            times.popleft()
        times.append(now)
        self.failures[key] = times
        while len(self.failures) > MAX_ADDRESSES:
            self.failures.popitem(last=False)
        return len(times)

    def block(self, key: str, until: float) -> bool:
        """Block *key*; False if it already was."""
        if key in self.blocked:
            return False
        self.blocked[key] = until
        while len(self.blocked) > MAX_ADDRESSES:
            self.blocked.popitem(last=False)
        return True


class AuthThrottle:
    """Failed authentications per address and per account; blocked ones."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._addresses = _Counter()
        self._accounts = _Counter()
        # (account, address key) -> until when the address is trusted for it.
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()

    def blocked(self, host: str) -> bool:
        """Whether *host* may not try to authenticate now."""
        return self._addresses.is_blocked(address_key(host), self.clock.seconds())

    def account_blocked(self, account: str, host: str) -> bool:
        """Whether *account* may not log in from *host* now (even with the right
        password): blocked, and *host* has not logged in to it before."""
        now = self.clock.seconds()
        if not self._accounts.is_blocked(account, now):
            return False
        trusted = self._trusted.get((account, address_key(host)))
        return trusted is None or trusted <= now

    def succeeded(self, account: str, host: str) -> None:
        """Remember that *host* logged in to *account*."""
        key = (account, address_key(host))
        self._trusted.pop(key, None)
        self._trusted[key] = self.clock.seconds() + TRUSTED_FOR
        while len(self._trusted) > MAX_ADDRESSES:
            self._trusted.popitem(last=False)

    def failed(self, host: str, settings: ThrottleSettings, account: str | None = None) -> float:
        """Count a failed authentication from *host* (for *account*, when the
        client named one); the seconds to wait before answering it (0 when
        delays are off)."""
        now = self.clock.seconds()
        key = address_key(host)
        n = self._addresses.count(key, now, settings.block_time)
        if n >= settings.block_after and self._addresses.block(key, now + settings.block_time):
            log.warn("Blocking authentication from {address} for {seconds:.0f} s after {n} failures",
                     address=key, seconds=settings.block_time, n=n)
        if account is not None and settings.account_block_after > 0:
            n_account = self._accounts.count(account, now, settings.block_time)
            if (n_account >= settings.account_block_after
                    and self._accounts.block(account, now + settings.block_time)):
                log.warn("Blocking password logins to {account} from new addresses for {seconds:.0f} s "
                         "after {n} failures", account=account, seconds=settings.block_time, n=n_account)
            n = max(n, n_account)
        if settings.failure_delay <= 0:
            return 0.0
        return min(settings.failure_delay * 2 ** (n - 1), settings.failure_delay * MAX_DELAY_FACTOR)
