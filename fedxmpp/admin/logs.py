"""What the log shows: ``[log] level`` (reloadable) and ``[log] format``.

twistd chooses where the log goes (``--logfile``, stdout with ``-n``, syslog)
and adds one observer for it to twisted.logger's global publisher before the
reactor runs; it offers no public handle on it.  Once the reactor runs,
:func:`install` puts a filter in front of each observer the global publisher
has (and, for ``format = "json"``, writes JSON lines to the same file instead
of text).  The filter drops events below the level, and keeps twisted.names'
per-lookup chatter (a UDP port opened and closed for every DNS query) out
unless the level is debug.
"""

from __future__ import annotations

import re
from typing import Any, cast

from twisted.logger import (
    FileLogObserver, FilteringLogObserver, ILogFilterPredicate, LogLevel, LogLevelFilterPredicate, PredicateResult,
    globalLogPublisher, jsonFileLogObserver,
)

LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}

# What twisted.internet.udp logs for each DNS query's port (legacy log.msg text).
_DNS_CHATTER = re.compile(r"^(DNSDatagramProtocol starting on \d+|\(UDP Port \d+ Closed\))$")


class _Filtered:
    """Marks the observers :func:`install` already wrapped (so a second call does not wrap twice)."""

    def __init__(self, inner: Any, levels: LogLevels) -> None:
        self.inner = inner
        self.filtering = FilteringLogObserver(inner, [cast(ILogFilterPredicate, levels)])

    def __call__(self, event: dict[str, Any]) -> None:
        self.filtering(event)


class LogLevels:
    """The predicate: events at ``[log] level`` and above, minus DNS chatter."""

    def __init__(self, level: str) -> None:
        self.predicate = LogLevelFilterPredicate()
        self.level = level
        self.set_level(level)

    def set_level(self, level: str) -> None:
        self.level = level
        self.predicate.setLogLevelForNamespace("", LEVELS[level])

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if self.level != "debug" and _is_dns_chatter(event):
            return PredicateResult.no
        return self.predicate(event)


def _is_dns_chatter(event: dict[str, Any]) -> bool:
    message = event.get("message") or ()
    text = " ".join(str(m) for m in message) if isinstance(message, tuple) else str(message)
    return bool(text) and _DNS_CHATTER.match(text) is not None


def install(levels: LogLevels, fmt: str, publisher: Any = globalLogPublisher) -> int:
    """Filter (and for "json", reformat) every observer of *publisher*; how many."""
    # twisted.logger.LogPublisher keeps its observers in the private list
    # _observers (unchanged since Twisted 15.2); tests/unit/admin/test_logs.py
    # fails loudly if that changes.
    observers: list[Any] = publisher._observers
    for index, observer in enumerate(list(observers)):
        if isinstance(observer, _Filtered):
            continue
        if fmt == "json":
            out = getattr(observer, "_outFile", None) if isinstance(observer, FileLogObserver) else None
            if out is not None:
                # One JSON object per line (no record separator): what log shippers read.
                observer = jsonFileLogObserver(out, recordSeparator="")
        observers[index] = _Filtered(observer, levels)
    return len(observers)
