"""What the router knows of a session, whatever its transport."""

from __future__ import annotations

from typing import Protocol

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
