"""Named events with prioritised handlers, in the manner of Prosody's event system.

Handlers are called highest priority first; the first to return True has handled
the event and stops it.  Event names are layered by stanza and destination, e.g.
``iq-get/host/urn:xmpp:ping`` or ``message/bare``.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.logger import Logger

log = Logger()

Handler = Callable[[Any], "bool | None"]


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    handler: Handler = field(compare=False)


class Hooks:
    """A table from event name to prioritised handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[_Entry]] = {}
        self._sequence = 0

    def add(self, event: str, handler: Handler, priority: int = 0) -> None:
        """Call *handler* for *event*; higher priorities run first, ties in order added."""
        self._sequence += 1
        insort(self._handlers.setdefault(event, []), _Entry((-priority, self._sequence), handler))

    def remove(self, event: str, handler: Handler) -> None:
        entries = self._handlers.get(event, [])
        self._handlers[event] = [e for e in entries if e.handler is not handler]

    def has(self, event: str) -> bool:
        return bool(self._handlers.get(event))

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
