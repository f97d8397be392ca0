"""Per-connection traffic shaping: bytes per second with a burst (a token bucket).

A connection that reads faster than its rate is not cut: the stream stops
reading from it until enough tokens have come back (``[limits] c2s_rate`` and
friends, :mod:`fedxmpp.config`).
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def seconds(self) -> float: ...


class TokenBucket:
    """*rate* bytes per second, up to *burst* bytes at once."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self._stamp = clock.seconds()

    def take(self, n: int) -> float:
        """Spend *n* bytes; the seconds to wait before reading more (0: read on)."""
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def shaper(rate: float, burst: float, clock: Clock) -> TokenBucket | None:
    """A bucket for one connection, or None when *rate* is 0 (not shaped)."""
    return TokenBucket(rate, burst, clock) if rate > 0 else None
