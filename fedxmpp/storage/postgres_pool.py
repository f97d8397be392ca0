"""Connections to PostgreSQL shared by a pool of threads, one interaction at a time each.

At most *size* threads run interactions, so at most *size* connections are
open; a connection is opened when no idle one is left and closed when it
breaks (the next interaction opens another, which is how the pool recovers
from a server restart).  An interaction whose transaction conflicts with
another's (serialization failure, deadlock) is run again, at most
:data:`MAX_ATTEMPTS` times, after a random pause that grows with each attempt
(so that transactions that keep colliding spread out instead of colliding again).
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Final, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from fedxmpp.storage.errors import StorageError

if TYPE_CHECKING:
    from fedxmpp.storage.postgres import PostgresEngine

R = TypeVar("R")

log = Logger()

MAX_ATTEMPTS: Final = 20
#: Seconds: the longest pause before an attempt.
MAX_BACKOFF: Final = 0.05


class PostgresPool:
    def __init__(self, engine: PostgresEngine, reactor: Any, size: int) -> None:
        self._engine = engine
        self._reactor = reactor
        self._threads = ThreadPool(minthreads=0, maxthreads=size, name="fedxmpp-postgres")
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self._connected = False
        self._shutdown_trigger = reactor.addSystemEventTrigger("during", "shutdown", self.close)

    def runInteraction(self, interaction: Callable[..., R], *args: Any, **kwargs: Any) -> Deferred[R]:
        """Run ``interaction(cursor, *args, **kwargs)`` in a pool thread and commit
        what it did; roll back if it raises."""
        if not self._started:
            self._started = True
            self._threads.start()
        return deferToThreadPool(self._reactor, self._threads, self._run, interaction, args, kwargs)

    def close(self) -> None:
        """Wait for running interactions, then close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._threads.stop()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _run(self, interaction: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        transient = self._engine.is_transient
        attempt = 1
        while True:
            conn = self._checkout()
            committing = False
            try:
                with conn.cursor() as cursor:
                    result = interaction(cursor, *args, **kwargs)
                if conn.info.transaction_status == self._engine.module.pq.TransactionStatus.INERROR:
                    # COMMIT would answer ROLLBACK without an error: never report that as done.
                    raise self._engine.module.InternalError("the transaction failed and was rolled back")
                committing = True
                conn.commit()
            except BaseException as e:
                self._checkin(conn, failed=True)
                # A connection lost before COMMIT was sent committed nothing (an idle
                # connection the server closed, after its restart): run it again on a new one.
                retry = isinstance(e, Exception) and (transient(e) or (conn.broken and not committing))
                if retry and attempt < MAX_ATTEMPTS:
                    # In this pool's thread: only this interaction waits.
                    time.sleep(random.uniform(0, min(MAX_BACKOFF, 0.001 * 2 ** attempt)))
                    attempt += 1
                    continue
                raise
            self._checkin(conn, failed=False)
            return result

    def _checkout(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            conn = self._engine.connect()
        except StorageError as e:
            if self._connected:  # lost at run time; at start-up the caller reports it
                log.error("{error}", error=str(e))
            raise
        self._connected = True
        return conn

    def _checkin(self, conn: Any, *, failed: bool) -> None:
        if failed and not conn.closed and not conn.broken:
            try:
                conn.rollback()
            except self._engine.module.Error:
                conn.close()
        if conn.closed or conn.broken or self._closed:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

