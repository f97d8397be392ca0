"""A room's recent messages, and the part of them a joining occupant asks for (§7.2.15)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from twisted.words.xish import domish

from fedxmpp.muc.stanzas import child


@dataclass(frozen=True)
class Entry:
    stamp: float
    message: domish.Element  # as reflected, never changed afterwards
    chars: int


@dataclass(frozen=True)
class Request:
    """What a joining occupant asked for in ``<history/>``; None = no limit of that kind."""

    maxstanzas: int | None = None
    maxchars: int | None = None
    seconds: int | None = None
    since: float | None = None

    @classmethod
    def from_join(cls, x: domish.Element | None) -> Request:
        h = None if x is None else child(x, x.uri, "history")
        if h is None:
            return cls()

        def number(name: str) -> int | None:
            value = h.getAttribute(name)
            if value is None:
                return None
            try:
                return max(0, int(value))
            except ValueError:
                return None

        since = None
        if h.getAttribute("since"):
            since = parse_stamp(h["since"])
        return cls(number("maxstanzas"), number("maxchars"), number("seconds"), since)


class History:
    def __init__(self, length: int) -> None:
        self.entries: deque[Entry] = deque(maxlen=length) if length > 0 else deque(maxlen=0)

    def add(self, stamp: float, message: domish.Element) -> None:
        if self.entries.maxlen:
            self.entries.append(Entry(stamp, message, len(message.toXml())))

    def select(self, request: Request, now: float, default_max: int) -> list[Entry]:
        """The newest entries that satisfy every limit of *request*, oldest first."""
        limit = default_max if request.maxstanzas is None else min(request.maxstanzas, default_max)
        chosen: list[Entry] = []
        chars = 0
        for entry in reversed(self.entries):
            if len(chosen) >= limit:
                break
            if request.seconds is not None and entry.stamp < now - request.seconds:
                break
            if request.since is not None and entry.stamp < request.since:
                break
            if request.maxchars is not None and chars + entry.chars > request.maxchars:
                break
            chars += entry.chars
            chosen.append(entry)
        chosen.reverse()
        return chosen


def format_stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> float | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
