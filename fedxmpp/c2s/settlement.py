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
from typing import Callable

from fedxmpp.router import Settled


class InOrder:
    def __init__(self, on_pending: Callable[[int], None] | None = None) -> None:
        #: Stanzas counted so far, and how many of them are settled in order.
        self.received = 0
        self.settled = 0
        self._cells: deque[list[bool]] = deque()  # from stanza settled+1 on: done?
        self._watchers: deque[tuple[int, Callable[[], None]]] = deque()
        self._on_pending = on_pending

    @property
    def pending(self) -> int:
        return len(self._cells)

    def add(self, outcome: Settled) -> None:
        """Count the next stanza, settled now (None) or when *outcome* fires."""
        self.received += 1
        if outcome is None and not self._cells:
            self.settled += 1
            if self._watchers:
                self._notify()
            return
        cell = [outcome is None]
        self._cells.append(cell)
        if outcome is not None:
            outcome.addBoth(self._done, cell)
        if self._on_pending is not None:
            self._on_pending(len(self._cells))

    def when(self, count: int, then: Callable[[], None]) -> None:
        """Call *then* once the first *count* stanzas are settled (at once if they are)."""
        if self.settled >= count and not self._watchers:
            then()
        else:
            self._watchers.append((count, then))
            self._notify()

    def _done(self, _: object, cell: list[bool]) -> None:
        cell[0] = True
        cells = self._cells
        moved = 0
        while cells and cells[0][0]:
            cells.popleft()
            moved += 1
        if moved:
            self.settled += moved
            self._notify()
            if self._on_pending is not None:
                self._on_pending(len(cells))

    def _notify(self) -> None:
        watchers = self._watchers
        while watchers and watchers[0][0] <= self.settled:
            watchers.popleft()[1]()
