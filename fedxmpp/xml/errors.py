"""Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3)."""

from __future__ import annotations

from twisted.words.xish import domish

from fedxmpp.xml import ns

# RFC 6120 §8.3.3: the error type that goes with each defined condition.
STANZA_ERROR_TYPES: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class StreamError(Exception):
    """A condition that ends the stream with ``<stream:error/>``."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text

    def to_element(self) -> domish.Element:
        el = domish.Element((ns.STREAMS, "error"))
        el.addElement((ns.STREAM_ERRORS, self.condition))
        if self.text:
            t = el.addElement((ns.STREAM_ERRORS, "text"), content=self.text)
            t[(ns.XML, "lang")] = "en"
        return el


class StanzaError(Exception):
    """A condition answered with an error stanza to the sender."""

    def __init__(self, condition: str, text: str | None = None, type: str | None = None) -> None:
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.type = type or STANZA_ERROR_TYPES.get(condition, "cancel")

    def to_element(self, by: str | None = None) -> domish.Element:
        el = domish.Element((None, "error"))
        el["type"] = self.type
        if by:
            el["by"] = by
        el.addElement((ns.STANZA_ERRORS, self.condition))
        if self.text:
            t = el.addElement((ns.STANZA_ERRORS, "text"), content=self.text)
            t[(ns.XML, "lang")] = "en"
        return el


def error_reply(stanza: domish.Element, error: StanzaError, by: str | None = None) -> domish.Element:
    """The error stanza answering *stanza* (RFC 6120 §8.3.1): addresses swapped,
    type 'error', the original payload kept for message/presence, the error appended."""
    reply = domish.Element((stanza.uri, stanza.name))
    for key in ("id", "xml:lang"):
        if key in stanza.attributes:
            reply[key] = stanza[key]
    lang = stanza.attributes.get((ns.XML, "lang"))
    if lang is not None:
        reply[(ns.XML, "lang")] = lang
    if stanza.getAttribute("from"):
        reply["to"] = stanza["from"]
    if stanza.getAttribute("to"):
        reply["from"] = stanza["to"]
    reply["type"] = "error"
    if stanza.name != "iq":
        for child in stanza.children:
            if isinstance(child, domish.Element) and child.name != "error":
                reply.addChild(child)
    else:
        for child in stanza.elements():
            reply.addChild(child)
            break
    reply.addChild(error.to_element(by))
    return reply
