"""What the router knows of a session, whatever its transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twisted.words.xish import domish

from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID


class Session(Protocol):
    """An authenticated stream that stanzas can be sent to.

    ``kind`` is 'c2s', 's2s' or 'component'; ``address`` is the authenticated
    address: the full JID of a client, the domain of a server or component.
    """

    kind: str
    address: JID

    def send(self, stanza: domish.Element) -> None:
        """Queue *stanza* for the peer (never blocks)."""

    def close(self, error: StreamError | None = None) -> None:
        """End the stream, with a stream error if one is given."""


@dataclass
class Hibernation:
    """What the ``c2s/hibernating`` hook is given when a client session starts to
    hibernate (XEP-0198): handlers may lengthen *timeout* (a device woken by
    XEP-0357 push stays resumable longer); *unacknowledged* is what its client
    had not acknowledged when the connection broke."""

    session: Any
    timeout: float
    unacknowledged: list[domish.Element]
