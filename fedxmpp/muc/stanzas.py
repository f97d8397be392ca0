"""Namespaces of multi-user chat and the elements a room puts in what it sends."""

from __future__ import annotations

from typing import Iterable

from twisted.words.xish import domish

from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, error_reply
from fedxmpp.xml.jid import JID

MUC = "http://jabber.org/protocol/muc"
USER = f"{MUC}#user"
ADMIN = f"{MUC}#admin"
OWNER = f"{MUC}#owner"
ROOMINFO = f"{MUC}#roominfo"
ROOMCONFIG = f"{MUC}#roomconfig"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
DELAY = "urn:xmpp:delay"
SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
CONFERENCE = "jabber:x:conference"
REGISTER = "jabber:iq:register"
REGISTER_FORM = f"{MUC}#register"
REQUEST = f"{MUC}#request"
VCARD = "vcard-temp"
VCARD_UPDATE = "vcard-temp:x:update"

# Status codes (XEP-0045 §15.6).
NON_ANONYMOUS = "100"
CONFIG_CHANGED = "104"
SELF = "110"
LOGGED = "170"
NOT_LOGGED = "171"
NOW_NON_ANONYMOUS = "172"
NOW_SEMI_ANONYMOUS = "173"
CREATED = "201"
NICK_MODIFIED = "210"
BANNED = "301"
NEW_NICK = "303"
KICKED = "307"
AFFILIATION_LOST = "321"
MEMBERS_ONLY_NOW = "322"
SHUTDOWN = "332"
TECHNICAL = "333"


def child(element: domish.Element, uri: str, name: str) -> domish.Element | None:
    for c in element.elements():
        if c.uri == uri and c.name == name:
            return c
    return None


def text(element: domish.Element | None) -> str:
    return "" if element is None else str(element)


def stanza(name: str, frm: JID, to: JID, type: str | None = None, id: str | None = None) -> domish.Element:
    el = domish.Element((ns.CLIENT, name))
    el["from"] = frm.full()
    el["to"] = to.full()
    if type:
        el["type"] = type
    if id:
        el["id"] = id
    return el


def user_x(codes: Iterable[str] = ()) -> domish.Element:
    x = domish.Element((USER, "x"))
    for code in codes:
        x.addElement("status")["code"] = code
    return x


def item(affiliation: str, role: str, jid: JID | None = None, nick: str | None = None,
         reason: str | None = None, actor: str | None = None) -> domish.Element:
    el = domish.Element((USER, "item"))
    el["affiliation"] = affiliation
    el["role"] = role
    if jid is not None:
        el["jid"] = jid.full()
    if nick is not None:
        el["nick"] = nick
    if actor:
        el.addElement("actor")["nick"] = actor
    if reason:
        el.addElement("reason", content=reason)
    return el


def occupant_id(value: str) -> domish.Element:
    el = domish.Element((OCCUPANT_ID, "occupant-id"))
    el["id"] = value
    return el


def error_from(original: domish.Element, frm: JID, to: JID, error: StanzaError) -> domish.Element:
    """The error answering *original* (sent by *to*, addressed to *frm*)."""
    reply = error_reply(original, error)
    reply["from"] = frm.full()
    reply["to"] = to.full()
    return reply
