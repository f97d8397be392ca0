"""Group commit: calls of one kind that arrive while a transaction runs share the next.

A store whose writes come in bursts (offline messages to one busy server) would
spend a transaction, and a commit, per call.  :class:`GroupCommit` runs the first
call at once, alone; what arrives while it runs waits and is written by the next
transaction, together (at most ``max_batch``).  So an idle server adds no delay,
and a busy one commits once per batch.

The batch function gets the calls' argument tuples and returns one result per
call, in order; a result that is an exception is raised to that caller only.  If
the whole transaction fails, every caller of the batch gets the error.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from fedxmpp.storage.database import Database, Transaction

BatchTxn = Callable[[Transaction, Sequence[tuple[Any, ...]]], list[Any]]


class GroupCommit:
    def __init__(self, database: Database, desc: str, batch_txn: BatchTxn, max_batch: int = 1000) -> None:
        self._db = database
        self._desc = desc
        self._txn = batch_txn
        self.max_batch = max_batch
        self._waiting: list[tuple[tuple[Any, ...], Deferred[Any]]] = []
        self._running = False
        #: Transactions run, and calls they served (for measurements).
        self.transactions = 0
        self.calls = 0

    async def submit(self, *args: Any) -> Any:
        d: Deferred[Any] = Deferred()
        self._waiting.append((args, d))
        if not self._running:
            self._next()
        result = await d
        if isinstance(result, Exception):
            raise result
        return result

    def _next(self) -> None:
        batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        if not batch:
            self._running = False
            return
        self._running = True
        self.transactions += 1
        self.calls += len(batch)
        done = Deferred.fromCoroutine(self._db.run_interaction(self._desc, self._txn, [a for a, _ in batch]))
        done.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _written(self, results: list[Any], batch: list[tuple[tuple[Any, ...], Deferred[Any]]]) -> None:
        self._next()
        for (_, d), result in zip(batch, results):
            d.callback(result)

    def _failed(self, failure: Failure, batch: list[tuple[tuple[Any, ...], Deferred[Any]]]) -> None:
        self._next()
        for _, d in batch:
            d.errback(failure)
