"""Client state indication (XEP-0352): less traffic for clients in the background.

The ``<csi xmlns='urn:xmpp:csi:0'/>`` feature is offered with resource binding.
After ``<inactive/>`` the session holds back what can wait (a
:class:`HeldUpdates` on ``session.csi``), as Prosody and ejabberd do:

* presence without a type or of type ``unavailable``, except the client's own
  (its echo from the server), kept per sender's full JID: only the latest;
* messages that carry nothing but a chat state (XEP-0085; processing hints and
  a thread allowed), also only the latest per sender.

Everything else — messages with a body, receipts and markers, subscription
requests, errors, iq — is delivered at once, and the held updates go out
first, in the order their latest versions arrived, so the client never sees a
message before the presence or chat state that preceded it.  ``<active/>``
delivers what is held and ends holding.  When more than ``[c2s] csi_max_held``
senders have something held, everything held is delivered.

This lives beside the client session rather than in ``features/`` because it
acts on what the session writes to its stream, like stream management: held
stanzas are not sent, so not counted or queued by XEP-0198 until released.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from twisted.words.xish import domish

if TYPE_CHECKING:
    from fedxmpp.c2s.context import C2SContext
    from fedxmpp.c2s.session import ClientSession

NS = "urn:xmpp:csi:0"
CHATSTATES = "http://jabber.org/protocol/chatstates"
HINTS = "urn:xmpp:hints"


class ClientStateIndication:
    """XEP-0352 for the process: the feature and the two nonzas."""

    def __init__(self, ctx: C2SContext) -> None:
        self.max_held = ctx.config.c2s.csi_max_held
        ctx.hooks.add("c2s/features", self._features)
        ctx.hooks.add("c2s/nonza", self._nonza)

    def _features(self, features: domish.Element) -> None:
        features.addElement((NS, "csi"))

    def _nonza(self, payload: tuple[ClientSession, domish.Element]) -> bool:
        session, element = payload
        if element.uri != NS:
            return False
        if element.name == "inactive":
            if session.csi is None:
                session.csi = HeldUpdates(session, self.max_held)
        elif element.name == "active":
            held, session.csi = session.csi, None
            if held is not None:
                held.flush()
        else:
            return False
        return True


class HeldUpdates:
    """What an inactive client's session holds back, latest per sender."""

    def __init__(self, session: ClientSession, limit: int) -> None:
        self.session = session
        self.limit = limit
        self._held: OrderedDict[tuple[str, str], domish.Element] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, stanza: domish.Element) -> bool:
        """Keep *stanza* back (True), or release what is held so that *stanza*
        can follow it (False: the caller sends it)."""
        key = self._key(stanza)
        if key is None:
            if self._held:
                self.flush()
            return False
        self._held.pop(key, None)
        self._held[key] = stanza
        if len(self._held) > self.limit:
            self.flush()
        return True

    def flush(self) -> None:
        held, self._held = self._held, OrderedDict()
        for stanza in held.values():
            self.session.transmit(stanza)

    def _key(self, stanza: domish.Element) -> tuple[str, str] | None:
        if stanza.name == "presence":
            frm = stanza.getAttribute("from", "")
            if stanza.getAttribute("type") not in (None, "unavailable") or frm == self.session.address.full():
                return None
            return ("presence", frm)
        if stanza.name == "message" and stanza.getAttribute("type") != "error" and _only_chat_state(stanza):
            return ("chat-state", stanza.getAttribute("from", ""))
        return None


def _only_chat_state(message: domish.Element) -> bool:
    state = False
    for child in message.elements():
        if child.uri == CHATSTATES:
            state = True
        elif child.uri != HINTS and child.name != "thread":
            return False
    return state
