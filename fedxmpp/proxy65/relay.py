"""One activated stream: the bytes of each connection written to the other.

Flow control is Twisted's producer/consumer: each direction is registered as the
push producer of the connection it writes to, so when that connection's send
buffer is full the other connection is no longer read (the sender's TCP window
closes), and nothing grows in memory whatever the size of the file.  The same
pause serves the bandwidth limit (a token bucket per direction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fedxmpp.stream.shaper import TokenBucket

if TYPE_CHECKING:
    from fedxmpp.proxy65.socks5 import Socks5Connection

log = Logger()


@implementer(IPushProducer)
class _Direction:
    """Bytes from *source* to *target*; reads *source* only while *target* takes them
    and the rate allows."""

    def __init__(self, source: Socks5Connection, target: Socks5Connection, bucket: TokenBucket | None,
                 clock: IReactorTime) -> None:
        self.source = source
        self.target = target
        self.bucket = bucket
        self.clock = clock
        self.target_full = False
        self.rate_wait: Any = None
        self.paused = False
        self.carried = 0

    def carry(self, data: bytes) -> None:
        self.carried += len(data)
        self.target.transport.write(data)
        if self.bucket is not None:
            wait = self.bucket.take(len(data))
            if wait > 0 and self.rate_wait is None:
                self.rate_wait = self.clock.callLater(wait, self._rate_ok)
                self._update()

    def _rate_ok(self) -> None:
        self.rate_wait = None
        self._update()

    # IPushProducer, called by the target's transport.
    def pauseProducing(self) -> None:
        self.target_full = True
        self._update()

    def resumeProducing(self) -> None:
        self.target_full = False
        self._update()

    def stopProducing(self) -> None:
        self.source.transport.loseConnection()

    def _update(self) -> None:
        paused = self.target_full or self.rate_wait is not None
        if paused != self.paused:
            self.paused = paused
            if paused:
                self.source.transport.pauseProducing()
            else:
                self.source.transport.resumeProducing()

    def stop(self) -> None:
        if self.rate_wait is not None and self.rate_wait.active():
            self.rate_wait.cancel()
        self.rate_wait = None


class Relay:
    """The two connections of one stream, from activation until either closes or
    the stream is idle for *idle_timeout* seconds."""

    def __init__(self, a: Socks5Connection, b: Socks5Connection, *, owner: str, clock: IReactorTime, rate: int,
                 idle_timeout: float, ended: Callable[[Relay], None]) -> None:
        self.owner = owner
        self.clock = clock
        self.idle_timeout = idle_timeout
        self._ended = ended
        self.over = False

        def bucket() -> TokenBucket | None:
            return TokenBucket(rate, max(rate, 64 * 1024), clock) if rate > 0 else None

        self.directions = {a: _Direction(a, b, bucket(), clock), b: _Direction(b, a, bucket(), clock)}
        self.idle = clock.callLater(idle_timeout, self._idle)
        for direction in self.directions.values():
            direction.target.transport.registerProducer(direction, True)
        for conn in (a, b):
            conn.relay = self
            early, conn.early = conn.early, b""
            if early:
                self.forward(conn, early)

    @property
    def carried(self) -> int:
        return sum(d.carried for d in self.directions.values())

    def forward(self, source: Socks5Connection, data: bytes) -> None:
        if self.over:
            return
        if self.idle.active():
            self.idle.reset(self.idle_timeout)
        self.directions[source].carry(data)

    def _idle(self) -> None:
        log.info("SOCKS5 stream of {owner} idle for {seconds}s; closing", owner=self.owner,
                 seconds=self.idle_timeout)
        for conn in self.directions:
            conn.transport.loseConnection()

    def closed(self, conn: Socks5Connection) -> None:
        """*conn* is gone: the other gets what is already buffered for it, then closes."""
        if self.over:
            return
        self.over = True
        if self.idle.active():
            self.idle.cancel()
        for direction in self.directions.values():
            direction.stop()
        for other in self.directions:
            if other is not conn:
                other.transport.unregisterProducer()
                other.transport.loseConnection()
        self._ended(self)
