"""Named events with prioritised handlers, in the manner of Prosody's event system.

Handlers are called highest priority first; the first to return True has handled
the event and stops it.  Event names are layered by stanza and destination, e.g.
``iq-get/host/urn:xmpp:ping`` or ``message/bare``.

The stanza chains (delivery and ``pre-`` events) are ordered by the one table in
:mod:`fedxmpp.chains`: their handlers hook in by step name, and are run with
:meth:`Hooks.run`, where a handler may return an awaitable (a Deferred or a
coroutine) and the chain goes on when it resolves.  Other events (session
started, stream features...) are plain synchronous :meth:`Hooks.fire`.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from fedxmpp.chains import STEPS

log = Logger()

Handler = Callable[[Any], Any]


def _log_failure(failure: Failure, handler: Callable[..., Any], event: str) -> None:
    log.failure("Handler {handler!r} for {event} failed", failure, handler=handler, event=event)


class PolicyFailed(Exception):
    """A policy handler (:mod:`fedxmpp.chains`) raised: the stanza must be refused."""

    def __init__(self, event: str, handler: Handler) -> None:
        super().__init__(f"policy {handler!r} failed on {event}")
        self.event = event
        self.handler = handler


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    handler: Handler = field(compare=False)
    policy: bool = field(compare=False, default=False)
    step: str | None = field(compare=False, default=None)


class Hooks:
    """A table from event name to prioritised handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[_Entry]] = {}
        self._sequence = 0

    def add(self, event: str, handler: Handler, priority: int = 0, *, step: str | None = None) -> None:
        """Call *handler* for *event*; higher priorities run first, ties in order added.

        With *step* (a name in :data:`fedxmpp.chains.STEPS`) the table gives the
        priority and whether the handler is a policy that fails closed.
        """
        policy = False
        if step is not None:
            found = STEPS[step]
            priority, policy = found.priority, found.policy
        self._sequence += 1
        # Copy on write: a chain waiting half-way keeps the list it started with.
        entries = list(self._handlers.get(event, ()))
        insort(entries, _Entry((-priority, self._sequence), handler, policy, step))
        self._handlers[event] = entries

    def remove(self, event: str, handler: Handler) -> None:
        entries = self._handlers.get(event, [])
        self._handlers[event] = [e for e in entries if e.handler is not handler]

    def has(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def steps(self, event: str) -> list[str | None]:
        """The step names of *event*'s handlers in the order they run (None for a
        handler added by priority alone), for tests and tools."""
        return [e.step for e in self._handlers.get(event, ())]

    def events(self) -> list[str]:
        return [name for name, entries in self._handlers.items() if entries]

    def fire(self, event: str, payload: Any = None) -> bool:
        """Run the handlers of *event* until one returns True; say whether one did.

        A handler that raises is logged and counts as not having handled the event,
        so one broken feature cannot silence the others.
        """
        for entry in self._handlers.get(event, ()):
            try:
                if entry.handler(payload):
                    return True
            except Exception:
                log.failure("Handler {handler!r} for {event} failed", handler=entry.handler, event=event)
        return False

    def gather(self, event: str, payload: Any = None) -> Deferred[None]:
        """Call every handler of *event*; fires once the awaitables they return have
        (failures are logged).  For work that must finish first, such as writing
        queues out before storage closes (``storage/flush``)."""
        waiting: list[Deferred[Any]] = []
        for entry in self._handlers.get(event, ()):
            try:
                result = entry.handler(payload)
            except Exception:
                log.failure("Handler {handler!r} for {event} failed", handler=entry.handler, event=event)
                continue
            if isinstance(result, Deferred) or hasattr(result, "__await__"):
                d = result if isinstance(result, Deferred) else Deferred.fromCoroutine(result)
                waiting.append(d.addErrback(_log_failure, entry.handler, event))
        return DeferredList(waiting).addCallback(lambda _: None)

    def run(self, event: str, payload: Any = None) -> bool | Deferred[bool]:
        """As :meth:`fire`, for a chain whose handlers may wait.

        Synchronous while every handler is; once one returns an awaitable, the
        rest runs when it resolves and a Deferred of the outcome is returned.
        A policy handler that raises (or whose awaitable fails) ends the chain
        with :class:`PolicyFailed` — raised, or as the Deferred's failure.
        """
        entries = self._handlers.get(event)
        if not entries:
            return False
        return self._run(event, payload, entries, 0)

    def _run(self, event: str, payload: Any, entries: list[_Entry], start: int) -> bool | Deferred[bool]:
        for i in range(start, len(entries)):
            entry = entries[i]
            try:
                result = entry.handler(payload)
            except PolicyFailed:
                raise  # from a chain this handler ran (message/full falling back to message/bare)
            except Exception:
                if entry.policy:
                    log.failure("Policy {handler!r} for {event} failed: refused", handler=entry.handler,
                                event=event)
                    raise PolicyFailed(event, entry.handler) from None
                log.failure("Handler {handler!r} for {event} failed", handler=entry.handler, event=event)
                continue
            if result is None or result is False or result is True:
                if result:
                    return True
                continue
            if isinstance(result, Deferred):
                waiting = result
            elif hasattr(result, "__await__"):
                waiting = Deferred.fromCoroutine(result)
            else:
                if result:
                    return True
                continue
            return waiting.addCallbacks(self._resumed, self._waited_failed,
                                        callbackArgs=(event, payload, entries, i),
                                        errbackArgs=(event, payload, entries, i))
        return False

    def _resumed(self, result: Any, event: str, payload: Any, entries: list[_Entry],
                 at: int) -> bool | Deferred[bool]:
        if result:
            return True
        return self._run(event, payload, entries, at + 1)

    def _waited_failed(self, failure: Failure, event: str, payload: Any, entries: list[_Entry],
                       at: int) -> bool | Deferred[bool]:
        entry = entries[at]
        if failure.check(PolicyFailed):
            return failure  # type: ignore[return-value]
        if entry.policy:
            log.failure("Policy {handler!r} for {event} failed: refused", failure, handler=entry.handler,
                        event=event)
            raise PolicyFailed(event, entry.handler)
        log.failure("Handler {handler!r} for {event} failed", failure, handler=entry.handler, event=event)
        return self._run(event, payload, entries, at + 1)
