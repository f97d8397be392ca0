"""A room's vCard (XEP-0054 on the room's JID) and the avatar hash announced from it:
in presence from the room's bare JID (XEP-0153) and in the room's disco#info form
(``muc#roominfo_avatarhash``, XEP-0486), which Conversations and Gajim read."""

from __future__ import annotations

import base64
import binascii
import hashlib

from twisted.words.xish import domish

from fedxmpp.features._shared import element_from_bytes, element_to_bytes
from fedxmpp.muc.stanzas import VCARD, VCARD_UPDATE, child, text
from fedxmpp.xml.errors import StanzaError


def photo_hash(vcard: domish.Element) -> str:
    """The SHA-1 of the vCard's photo (hex), "" when it has none; bad-request when
    the photo is not base64."""
    binval = child(child(vcard, VCARD, "PHOTO") or vcard, VCARD, "BINVAL")
    if child(vcard, VCARD, "PHOTO") is None or binval is None or not text(binval).strip():
        return ""
    try:
        data = base64.b64decode("".join(text(binval).split()), validate=True)
    except (binascii.Error, ValueError):
        raise StanzaError("bad-request", "The photo is not base64") from None
    return hashlib.sha1(data).hexdigest()


def dump(vcard: domish.Element) -> str:
    return element_to_bytes(vcard).decode("utf-8")


def load(stored: str) -> domish.Element:
    return element_from_bytes(stored.encode("utf-8"))


def update_x(avatar_hash: str) -> domish.Element:
    """XEP-0153 §3.1: <photo/> with the hash, empty when there is no avatar."""
    x = domish.Element((VCARD_UPDATE, "x"))
    photo = x.addElement("photo")
    if avatar_hash:
        photo.addContent(avatar_hash)
    return x
