"""One job at a time per user: the order in which a user's presence and roster work happens.

Roster and subscription work needs the database, so it is asynchronous; yet two
stanzas about one user must take effect in the order they arrived (a
``subscribed`` then a presence update, two roster sets...).  :class:`SerialJobs`
keeps a queue per key (a bare JID): a job starts when the previous one for that
key has finished, and at once, synchronously, when the queue is idle — so work
that needs no database (a presence delivered to an online user) costs nothing
extra.  Jobs for different keys run concurrently; a job must never wait for
another key's job (it may *submit* one), so queues cannot deadlock.

The queue drains in a loop, not by recursion, so thousands of jobs that finish
synchronously behind a slow one cannot exhaust the stack.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Awaitable, Callable, Coroutine, Hashable, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

Job = Callable[..., "Awaitable[Any] | Any"]


class TooManyWaiting(Exception):
    """:meth:`SerialJobs.attempt` was given its limit and the key's queue is full."""


class _Entry:
    __slots__ = ("fn", "args", "done")

    def __init__(self, fn: Job, args: tuple[Any, ...], done: Deferred[Any] | None) -> None:
        self.fn = fn
        self.args = args
        self.done = done


class SerialJobs:
    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[_Entry]] = {}

    def busy(self, key: Hashable) -> bool:
        """Whether a job for *key* is running or waiting."""
        return key in self._queues

    def run(self, key: Hashable, fn: Job, *args: Any) -> None:
        """Run ``fn(*args)`` (sync or async) after *key*'s earlier jobs; failures are logged."""
        self._submit(key, _Entry(fn, args, None))

    def call(self, key: Hashable, fn: Job, *args: Any) -> Deferred[Any]:
        """As :meth:`run`, with a Deferred of the job's result for the caller to await."""
        done: Deferred[Any] = Deferred()
        self._submit(key, _Entry(fn, args, done))
        return done

    def waiting(self, key: Hashable) -> int:
        """How many jobs for *key* are running or waiting."""
        queue = self._queues.get(key)
        return 0 if queue is None else len(queue)

    def attempt(self, key: Hashable, fn: Job, *args: Any, limit: int = 0) -> Any:
        """As :meth:`call`, but when *key* is idle and ``fn(*args)`` finishes at once,
        its result itself (an exception propagates) — no Deferred on the common path.
        Otherwise a Deferred of the result; later jobs for *key* wait for it.  With
        *limit*, :class:`TooManyWaiting` if that many jobs for *key* already wait."""
        queue = self._queues.get(key)
        if queue is not None:
            if limit and len(queue) >= limit:
                raise TooManyWaiting(key)
            return self.call(key, fn, *args)
        result = fn(*args)
        # Deferred is an ABC's subclass, so isinstance is slow: the common results first.
        if result is None or result is True or result is False or not (
                isinstance(result, Deferred) or hasattr(result, "__await__")):
            return result
        d = result if isinstance(result, Deferred) else Deferred.fromCoroutine(cast(Coroutine[Any, Any, Any], result))
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        if outcome:
            if isinstance(outcome[0], Failure):
                outcome[0].raiseException()
            return outcome[0]
        gate: Deferred[None] = Deferred()
        self.run(key, lambda: gate)  # the key stays busy until fn's work is done
        done: Deferred[Any] = Deferred()

        def finished(_: Any) -> None:
            result = outcome[0]
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(result)
            gate.callback(None)

        d.addCallback(finished)
        return done

    def _submit(self, key: Hashable, entry: _Entry) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(entry)
            return
        queue = self._queues[key] = deque((entry,))
        self._drain(key, queue)

    def _drain(self, key: Hashable, queue: deque[_Entry]) -> None:
        while queue:
            entry = queue[0]
            try:
                result = entry.fn(*entry.args)
            except BaseException:
                self._settle(entry, Failure())
                queue.popleft()
                continue
            if isinstance(result, Deferred) or hasattr(result, "__await__"):
                d = result if isinstance(result, Deferred) else Deferred.fromCoroutine(cast(Coroutine[Any, Any, Any], result))
                outcome: list[Any] = []
                # Consumes the result (a failure included): _settle reports it.
                d.addBoth(outcome.append)
                if not outcome:  # still running: carry on when it finishes (we return, so no late binding)
                    d.addCallback(lambda _: self._resume(key, queue, entry, outcome[0]))
                    return
                result = outcome[0]
            self._settle(entry, result)
            queue.popleft()
        del self._queues[key]

    def _resume(self, key: Hashable, queue: deque[_Entry], entry: _Entry, result: Any) -> None:
        queue.popleft()
        self._settle(entry, result)
        self._drain(key, queue)

    @staticmethod
    def _settle(entry: _Entry, result: Any) -> None:
        if entry.done is not None:
            if isinstance(result, Failure):
                entry.done.errback(result)
            else:
                entry.done.callback(result)
        elif isinstance(result, Failure):
            log.failure("Job {job!r} failed", result, job=entry.fn)
