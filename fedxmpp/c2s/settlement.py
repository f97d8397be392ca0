"""Which of a client's stanzas are settled, in the order the client sent them.

:meth:`Router.route` says when a stanza is settled (:mod:`fedxmpp.router`):
at once, or later when a storage write commits.  :class:`InOrder` counts the
stanzas of one client session whose every predecessor is settled too, so that
stream management (XEP-0198) acknowledges only settled stanzas, and tells the
session how many are still unsettled, so that it can stop reading a client
that sends faster than storage commits (backpressure).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from fedxmpp.router import Settled


class InOrder:
    def __init__(self, on_pending: Callable[[int], None] | None = None) -> None:
        #: Stanzas counted so far, and how many of them are settled in order.
        self.received = 0
        self.settled = 0
        # From stanza settled+1 on: [done, how many stanzas, their outcome].  Stanzas
        # in a row with one outcome (rows of one archive batch) share a cell.
        self._cells: deque[list[Any]] = deque()
        self._watchers: deque[tuple[int, Callable[[], None]]] = deque()
        self._on_pending = on_pending

    @property
    def pending(self) -> int:
        return self.received - self.settled

    def add(self, outcome: Settled) -> None:
        """Count the next stanza, settled now (None) or when *outcome* fires."""
        self.received += 1
        cells = self._cells
        if not cells:
            if outcome is None:
                self.settled += 1
                if self._watchers:
                    self._notify()
                return
        else:
            last = cells[-1]
            if last[2] is outcome and (outcome is None or not last[0]):
                last[1] += 1
                self._pending_changed()
                return
        cell = [outcome is None, 1, outcome]
        cells.append(cell)
        if outcome is not None:
            outcome.addBoth(self._done, cell)
        self._pending_changed()

    def when(self, count: int, then: Callable[[], None]) -> None:
        """Call *then* once the first *count* stanzas are settled (at once if they are)."""
        if self.settled >= count and not self._watchers:
            then()
        else:
            self._watchers.append((count, then))
            self._notify()

    def _done(self, _: object, cell: list[Any]) -> None:
        cell[0] = True
        cell[2] = None  # a later stanza with the same outcome needs a cell of its own
        cells = self._cells
        moved = 0
        while cells and cells[0][0]:
            moved += cells.popleft()[1]
        if moved:
            self.settled += moved
            self._notify()
            self._pending_changed()

    def _pending_changed(self) -> None:
        if self._on_pending is not None:
            self._on_pending(self.received - self.settled)

    def _notify(self) -> None:
        watchers = self._watchers
        while watchers and watchers[0][0] <= self.settled:
            watchers.popleft()[1]()
