"""XEP-0280: Message Carbons (``urn:xmpp:carbons:2``), so that every device sees
both sides of every conversation.

* A client turns carbons on or off for its own session with an iq set of
  ``<enable/>`` or ``<disable/>`` (to its own bare JID); asking again is not an
  error (§10.1).  Anyone else's request is ``<not-allowed/>``.  A session's
  choice ends with the session.
* **Received**: when the default delivery rules have given a message to one or
  more of a user's resources (``message/delivered``, see
  :mod:`fedxmpp.im.delivery`), each other carbons-enabled resource of the user
  gets it wrapped as ``<received/>`` in a XEP-0297 ``<forwarded/>``, from the
  user's bare JID.  A message that went to offline storage was delivered to
  nobody and is not copied.
* **Sent**: a message a user's client sends passes the sender-side events
  (``pre-message/*``, see :mod:`fedxmpp.im.outbound`); each other
  carbons-enabled resource of the user gets it wrapped as ``<sent/>``, whether
  or not the sending client enabled carbons.

Which messages are copied (§6, the XEP's suggested rules, as Prosody applies
them): type 'chat'; type 'normal' (or none) with a ``<body/>``; any other
type but error, groupchat and headline when it carries instant-messaging
payloads (chat states XEP-0085, receipts XEP-0184, chat markers XEP-0333,
OMEMO/OpenPGP encryption, retraction, reactions, Jingle message initiation) or
a XEP-0359 ``<stanza-id/>`` that the user's own archive added.  Never copied:
errors (the server keeps no state to match them to what they answer), a
message with ``<private xmlns='urn:xmpp:carbons:2'/>`` or the XEP-0334
``<no-copy/>`` hint, a message with a MUC ``<x xmlns='...muc#user'/>`` (MUC
traffic and private messages, §6), and a carbon or a XEP-0313 result itself —
a carbon is never carboned.  On an incoming message the ``<private/>`` element
is removed before delivery (§7).

Copies go straight to the sessions, not through the router: they are the
server's own copies for the user's own resources.  The server advertises
``urn:xmpp:carbons:2`` in its disco#info.
"""

from __future__ import annotations

import weakref

from twisted.words.xish import domish

from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.sessions import BoundSession
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID

CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
MUC_USER = "http://jabber.org/protocol/muc#user"
MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"

# Namespaces of payloads that make a message part of a conversation (§6).
IM_PAYLOADS = frozenset({
    "http://jabber.org/protocol/chatstates",      # XEP-0085
    "urn:xmpp:receipts",                           # XEP-0184
    "urn:xmpp:chat-markers:0",                     # XEP-0333
    "eu.siacs.conversations.axolotl",              # OMEMO (legacy)
    "urn:xmpp:omemo:2",                            # OMEMO
    "urn:xmpp:openpgp:0",                          # XEP-0373
    "urn:xmpp:message-retract:0",                  # XEP-0424
    "urn:xmpp:message-retract:1",
    "urn:xmpp:reactions:0",                        # XEP-0444
    "urn:xmpp:jingle-message:0",                   # XEP-0353
    "urn:xmpp:jingle-message:1",
})

# Where the handlers run (before the archive, which keeps what it is given, so
# <private/> is gone first; sent carbons between the archive's stamp and unstamp,
# so the copy keeps the <stanza-id/>, XEP-0313 §3.2): see fedxmpp.chains.


def eligible(stanza: domish.Element, user: JID) -> bool:
    """Whether *stanza* is a message that carbons copy for *user* (module docstring)."""
    mtype = stanza.getAttribute("type") or "normal"
    if mtype in ("error", "groupchat", "headline"):
        return False
    chat = mtype == "chat"
    body = im = archived = False
    for child in stanza.elements():
        uri, name = child.uri, child.name
        if uri == CARBONS or (uri == HINTS and name == "no-copy") or uri == MUC_USER or uri == MAM:
            return False
        if name == "body" and uri in ns.STANZA_NAMESPACES:
            body = True
        elif uri in IM_PAYLOADS:
            im = True
        elif uri == SID and name == "stanza-id" and child.getAttribute("by") == user._full:
            archived = True
    return chat or (mtype == "normal" and body) or im or archived


def wrap(direction: str, stanza: domish.Element, user: JID, to: JID) -> domish.Element:
    """``<message from=user to=to><{direction}><forwarded>stanza`` (§7, §8)."""
    carbon = domish.Element((ns.CLIENT, "message"))
    carbon["from"] = user.full()
    carbon["to"] = to.full()
    mtype = stanza.getAttribute("type")
    if mtype:
        carbon["type"] = mtype
    forwarded = carbon.addElement((CARBONS, direction)).addElement((FORWARD, "forwarded"))
    forwarded.addChild(stanza)
    return carbon


def clone(element: domish.Element) -> domish.Element:
    """A deep copy of *element*, so that what happens to the original later (the
    router re-homing it, another feature's changes) does not reach the copy.

    The copy is in jabber:client: nested in <forwarded/> it is no longer re-homed by
    the serialiser, and a message from a component or server stream would otherwise
    reach the client in jabber:component:accept or jabber:server."""
    uri = ns.CLIENT if element.uri in ns.STANZA_NAMESPACES else element.uri
    default = ns.CLIENT if element.defaultUri in ns.STANZA_NAMESPACES else element.defaultUri
    copy = domish.Element((uri, element.name), default, dict(element.attributes), dict(element.localPrefixes))
    for child in element.children:
        copy.addChild(clone(child) if isinstance(child, domish.Element) else child)
    return copy


class Carbons:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        # Carbons-enabled sessions, by user.
        self.enabled: dict[JID, set[BoundSession]] = {}
        # Incoming messages that carried <private/> (removed before delivery).
        self._private: weakref.WeakSet[domish.Element] = weakref.WeakSet()

    def register(self, hooks: Hooks) -> None:
        self.ctx.disco.server_features.add(CARBONS)
        hooks.add(f"iq-set/bare/{CARBONS}", self._iq_set)
        hooks.add("c2s/session-ended", self._session_ended)
        hooks.add("message/full", self._incoming, step="carbons")
        hooks.add("message/bare", self._incoming, step="carbons")
        hooks.add("message/delivered", self._delivered)
        for kind in ("host", "bare", "full"):
            hooks.add(f"pre-message/{kind}", self._sent, step="carbons-sent")

    # -- enable / disable -----------------------------------------------------------------

    def _iq_set(self, event: StanzaEvent) -> bool:
        command = event.payload()
        session = self.ctx.sessions.get(event.frm) if event.frm.resource is not None else None
        if session is None or event.frm.bare != event.to:
            event.error("not-allowed", "Only a client of this account can change its own carbons")
        elif command is None or command.name not in ("enable", "disable"):
            event.error("bad-request", "Expected <enable/> or <disable/>")
        else:
            if command.name == "enable":
                self.enabled.setdefault(session.bare, set()).add(session)
            else:
                self._forget(session)
            event.reply()
        return True

    def _session_ended(self, session: BoundSession) -> None:
        self._forget(session)

    def _forget(self, session: BoundSession) -> None:
        sessions = self.enabled.get(session.bare)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.enabled[session.bare]

    # -- copies ----------------------------------------------------------------------------------

    def _incoming(self, event: StanzaEvent) -> bool:
        stanza = event.stanza
        for child in list(stanza.elements()):
            if child.uri == CARBONS and child.name == "private":
                stanza.children.remove(child)
                self._private.add(stanza)
        return False

    def _delivered(self, delivered: tuple[StanzaEvent, tuple[BoundSession, ...]]) -> None:
        event, given = delivered
        user = event.to.bare
        sessions = self.enabled.get(user)
        if not sessions or event.frm.bare == user:
            # Between a user's own resources, the sent carbon is the copy.
            return
        stanza = event.stanza
        others = [s for s in sessions if s not in given]
        if not others or stanza in self._private or not eligible(stanza, user):
            return
        copy = clone(stanza)
        for session in sorted(others, key=lambda s: s.address.full()):
            session.send(wrap("received", copy, user, session.address))

    def _sent(self, event: StanzaEvent) -> bool:
        user = event.frm.bare
        sessions = self.enabled.get(user)
        if not sessions:
            return False
        # From a bare JID (a gateway sending for the user, XEP-0356): every resource gets it.
        others = [s for s in sessions if s.address != event.frm]
        stanza = event.stanza
        if not others or not eligible(stanza, user):
            return False
        copy = clone(stanza)
        if not copy.getAttribute("to"):
            copy["to"] = event.to.full()
        for session in sorted(others, key=lambda s: s.address.full()):
            session.send(wrap("sent", copy, user, session.address))
        return False


def register(hooks: Hooks, ctx: ServerContext) -> None:
    Carbons(ctx).register(hooks)
