"""What every server-side SASL mechanism shares: its outcomes and its interface.

A mechanism is a pure state machine.  The negotiation code feeds it the
client's decoded responses and sends back what it returns; the only I/O a
mechanism does is the credential lookup it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

from fedxmpp.xml.jid import JID, InvalidJID

# A bound on any one client message a mechanism parses (RFC 6120 §6.4.2 leaves it
# to the server).  Room for a 1023-byte localpart and a 3071-byte authzid, escaped.
MAX_MESSAGE: Final = 16384


@dataclass(frozen=True)
class Challenge:
    """Send ``<challenge/>`` with *data* (possibly empty) and wait for a response."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """Authenticated as the prepared localpart *user*; *data* is the
    additional data for ``<success/>`` (SCRAM's server-final message) or None."""

    user: str
    data: bytes | None


@dataclass(frozen=True)
class Failure:
    """Send ``<failure/>`` with the RFC 6120 §6.5 *condition* and optional *text*;
    *user* is the prepared localpart the client tried, when it got that far."""

    condition: str
    text: str | None = None
    # Not what the client is told, so not part of the outcome's equality.
    user: str | None = field(default=None, compare=False)


class Mechanism(Protocol):
    name: str

    async def step(self, response: bytes | None) -> Challenge | Success | Failure:
        """Take the client's next message and say what to send.

        On the first call *response* is the initial response: None when the
        client sent none, ``b""`` when it sent an empty one (``=``).  After a
        Success or Failure the exchange is over.
        """
        ...


def authzid_acceptable(authzid: str, user: str, domain: str) -> bool:
    """An authorization identity may only be empty or the account's own bare JID."""
    if not authzid:
        return True
    try:
        jid = JID.parse(authzid)
    except InvalidJID:
        return False
    return jid.resource is None and jid.user == user and jid.host == domain
