"""Which stanzas wake a device, and the XEP-0357 notification that wakes it.

Not a hook: pure functions of stanzas, used by :mod:`.service`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.words.xish import domish

from fedxmpp.features import forms
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID, InvalidJID

PUSH = "urn:xmpp:push:0"
SUMMARY = "urn:xmpp:push:summary"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
MUC_USER = "http://jabber.org/protocol/muc#user"
REFERENCE = "urn:xmpp:reference:0"

# Payloads that a client shows as a message although the stanza has no body
# (end-to-end encrypted messages, incoming calls).
WAKING_PAYLOADS = frozenset({
    ("eu.siacs.conversations.axolotl", "encrypted"),   # OMEMO (legacy)
    ("urn:xmpp:omemo:2", "encrypted"),                  # OMEMO
    ("urn:xmpp:openpgp:0", "openpgp"),                  # XEP-0373
    ("jabber:x:encrypted", "x"),                        # XEP-0027
    ("urn:xmpp:jingle-message:0", "propose"),           # XEP-0353 call
    ("urn:xmpp:jingle-message:1", "propose"),
})

# The longest body passed on (it goes to a third party, and to a phone's notification).
MAX_BODY = 1000


@dataclass(frozen=True)
class Wake:
    """A message worth waking a device for: who sent it, and its body ("" for none)."""

    sender: str
    body: str


def _body(message: domish.Element) -> str:
    for child in message.elements():
        if child.name == "body" and child.uri in ns.STANZA_NAMESPACES:
            return str(child)
    return ""


def _carried(stanza: domish.Element) -> tuple[domish.Element, str] | None:
    """The message a stanza carries for its recipient: itself, or the message
    of a received carbon (XEP-0280); None for a sent carbon, the user's own."""
    for child in stanza.elements():
        if child.uri == CARBONS and child.name in ("sent", "received"):
            if child.name == "sent":
                return None
            for forwarded in child.elements():
                if forwarded.uri == FORWARD and forwarded.name == "forwarded":
                    for inner in forwarded.elements():
                        if inner.name == "message":
                            return inner, "received"
            return None
    return stanza, ""


def waking(stanza: domish.Element, nick: str | None = None) -> Wake | None:
    """Whether *stanza*, queued or stored for a device, is worth a notification.

    Chat and normal messages with a body, or with an encrypted payload or a call
    proposal (which clients show as messages), and received carbons of those; a
    group chat message only when it mentions *nick*, the recipient's nickname in
    that room (its body names it as a word, or a XEP-0372 mention reference
    points at it), and is not the recipient's own.  Not errors, headlines, chat
    states, receipts, markers, subjects, or the user's own sent carbons.
    """
    if stanza.name != "message":
        return None
    carried = _carried(stanza)
    if carried is None:
        return None
    message = carried[0]
    mtype = message.getAttribute("type") or "normal"
    body = _body(message)
    sender = message.getAttribute("from") or ""
    if mtype == "groupchat":
        if nick is None or not body or not _mentions(message, body, nick, sender):
            return None
        return Wake(sender, body)
    if mtype not in ("normal", "chat"):
        return None
    if body.strip() or any((c.uri, c.name) in WAKING_PAYLOADS for c in message.elements()):
        return Wake(sender, body)
    return None


def _mentions(message: domish.Element, body: str, nick: str, sender: str) -> bool:
    try:
        frm = JID.parse(sender)
    except InvalidJID:
        return False
    if frm.resource == nick:
        return False  # one's own message, reflected by the room
    mention = f"xmpp:{frm.bare.full()}/{nick}"
    for child in message.elements():
        if child.uri == REFERENCE and child.name == "reference" and child.getAttribute("type") == "mention" \
                and child.getAttribute("uri") == mention:
            return True
    return re.search(rf"(?<!\w){re.escape(nick)}(?!\w)", body, re.IGNORECASE) is not None


def notification(user: JID, service: str, node: str, options: dict[str, list[str]], iq_id: str, *,
                 count: int, last: Wake | None, include_sender: bool, include_body: bool) -> domish.Element:
    """The XEP-0357 publish of a ``urn:xmpp:push:summary`` notification, from the
    user's bare JID, with the client's publish options (§7)."""
    iq = domish.Element((ns.CLIENT, "iq"))
    iq["type"] = "set"
    iq["id"] = iq_id
    iq["from"] = user.bare.full()
    iq["to"] = service
    pubsub = iq.addElement((PUBSUB, "pubsub"))
    publish = pubsub.addElement("publish")
    if node:
        publish["node"] = node
    fields = [forms.Field("message-count", values=[str(count)])]
    if last is not None and include_sender and last.sender:
        fields.append(forms.Field("last-message-sender", values=[last.sender]))
    if last is not None and include_body and last.body:
        fields.append(forms.Field("last-message-body", values=[last.body[:MAX_BODY]]))
    summary = forms.build("submit", SUMMARY, fields)
    publish.addElement("item").addElement((PUSH, "notification")).addChild(summary)
    if options:
        pubsub.addElement("publish-options").addChild(
            forms.build("submit", PUBLISH_OPTIONS, [forms.Field(var, values=list(values))
                                                     for var, values in options.items()]))
    return iq
