"""A XEP-0227 ``<user/>`` element read into an :class:`~fedxmpp.storage.AccountBundle`.

What is read (XEP-0227 1.1), and where it goes:

* ``<scram-credentials xmlns='urn:xmpp:pie:0#scram'>`` (SCRAM-SHA-1, SCRAM-SHA-256):
  kept as they are, so users log in with their old passwords although the file
  holds none.  ejabberd 23.01 writes each value base64-encoded twice (the
  base64 text it stores, encoded again); that is recognised by the keys' length.
* ``password='...'``: never stored; hashed to salted SCRAM-SHA-1 and -SHA-256
  credentials (the file's SCRAM credentials are then not needed).
* ``<query xmlns='jabber:iq:roster'>``: the items with their subscription, ask,
  name, groups (and RFC 6121 ``approved``); ``<presence type='subscribe'/>``
  children of the user (XEP-0227 §4.8) are pending inbound requests.
* ``<offline-messages>``: the messages, oldest first.
* ``<vCard xmlns='vcard-temp'>`` and ``<query xmlns='jabber:iq:private'>``: the
  keyval documents the vcard and private features read.
* ``<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>`` (node configuration
  and affiliations) and ``<pubsub xmlns='http://jabber.org/protocol/pubsub'>``
  (items): the user's PEP nodes.
* ``<archive xmlns='urn:xmpp:pie:0#mam'>``: the message archive; messages get new
  archive ids (ours carry their time), their time comes from the delay stamp.

Anything else is skipped and counted in :class:`Notes`, for the operator.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field

from twisted.words.xish import domish

from fedxmpp.features._shared import element_to_bytes
from fedxmpp.features.mam import parse_datetime
from fedxmpp.features.pep.nodeconfig import ConfigValueError, NodeConfig
from fedxmpp.features.private import RESERVED as PRIVATE_RESERVED, key_of
from fedxmpp.portable.reader import PIE, PieError, UserElement, describe, split
from fedxmpp.storage import AccountBundle, ArchiveEntry, PubsubItem, PubsubNode, RosterItem, make_archive_id
from fedxmpp.storage.credentials import HashName, ScramCredentials
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID, InvalidJID, prep_domain, prep_local
from fedxmpp.xml.serialize import serialize

PIE_SCRAM = "urn:xmpp:pie:0#scram"
PIE_MAM = "urn:xmpp:pie:0#mam"
ROSTER = "jabber:iq:roster"
PRIVATE = "jabber:iq:private"
VCARD = "vcard-temp"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
DATA = "jabber:x:data"
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
DELAY = "urn:xmpp:delay"
MECHANISMS: dict[str, HashName] = {"SCRAM-SHA-1": "sha-1", "SCRAM-SHA-256": "sha-256"}
_KEY_SIZES = {"sha-1": 20, "sha-256": 32}
_PREPARED_MAX = 100_000


@dataclass
class Notes:
    """What the import skipped, by description, for one summary at the end; and the
    bare JIDs prepared so far (a contact is in many rosters)."""

    skipped: Counter[str] = field(default_factory=Counter)
    prepared: dict[str, str] = field(default_factory=dict)

    def skip(self, what: str) -> None:
        self.skipped[what] += 1


@dataclass(frozen=True)
class ParsedAccount:
    bundle: AccountBundle
    #: The file's password, to hash; None when the bundle carries SCRAM credentials.
    password: str | None
    where: str


def parse_user(u: UserElement, notes: Notes, *, now: float | None = None) -> ParsedAccount:
    """The account in *u*; :class:`PieError` naming the file, the user and the
    element for anything that cannot be imported."""
    user_el = u.element
    name = user_el.get("name")
    if not name:
        raise PieError(f"{u.where}: <user> has no 'name' attribute")
    try:
        domain = prep_domain(u.host)
    except InvalidJID as e:
        raise PieError(f"{u.where}: the host is not a valid domain: {e}") from None
    try:
        user = prep_local(name)
    except InvalidJID as e:
        raise PieError(f"{u.where}: the name is not a valid localpart: {e}") from None
    reading = _Reading(user, domain, notes, time.time() if now is None else now, u.where)
    for child in user_el:
        reading.element(child)
    password = user_el.get("password")
    if password is None and not reading.credentials:
        raise PieError(f"{u.where}: has neither a password nor SCRAM credentials")
    bundle = AccountBundle(
        user, domain, {} if password is not None else reading.credentials,
        roster=reading.roster_items(), documents=reading.documents, offline=reading.offline,
        pep=[(node, reading.items.get(node.node, [])) for node in reading.node_list()],
        archive=reading.archive)
    return ParsedAccount(bundle, password, u.where)


_ROSTER_ITEM = f"{{{ROSTER}}}item"
_ROSTER_GROUP = f"{{{ROSTER}}}group"


class _Reading:
    def __init__(self, user: str, domain: str, notes: Notes, now: float, where: str) -> None:
        self.user = user
        self.domain = domain
        self.bare = f"{user}@{domain}"
        self.notes = notes
        self.where = where
        self.now_us = int(now * 1_000_000)
        self.credentials: dict[HashName, ScramCredentials] = {}
        self.roster: dict[str, RosterItem] = {}
        self.pending_in: list[str] = []
        self.documents: dict[tuple[str, str], bytes] = {}
        self.offline: list[str] = []
        self.nodes: dict[str, PubsubNode] = {}
        self.items: dict[str, list[PubsubItem]] = {}
        self.archive: list[ArchiveEntry] = []

    def fail(self, problem: str) -> PieError:
        return PieError(f"{self.where}: {problem}")

    def element(self, el: ET.Element) -> None:
        key = split(el.tag)
        uri, name = key
        if key == (PIE_SCRAM, "scram-credentials"):
            self.scram(el)
        elif key == (ROSTER, "query"):
            for item in el:
                if item.tag == _ROSTER_ITEM:
                    self.roster_item(item)
        elif name == "presence" and uri in (ns.CLIENT, PIE):
            sender = el.get("from")
            if el.get("type") == "subscribe" and sender:
                self.pending_in.append(self.contact(el, sender))
            else:
                self.notes.skip("<presence> other than a subscription request")
        elif key == (PIE, "offline-messages"):
            for message in el:
                if split(message.tag)[1] == "message" and split(message.tag)[0] in (ns.CLIENT, PIE):
                    self.offline.append(serialize(_as_client(to_domish(message)), ns.CLIENT))
                else:
                    self.notes.skip(f"{describe(message)} in <offline-messages>")
        elif key == (VCARD, "vCard"):
            if len(el):
                self.documents[("vcard", "")] = element_to_bytes(to_domish(el))
        elif key == (PRIVATE, "query"):
            for doc in el:
                doc_uri = split(doc.tag)[0]
                if not doc_uri or doc_uri in PRIVATE_RESERVED:
                    raise self.fail(f"{describe(doc)} cannot be kept in private XML storage (reserved namespace)")
                converted = to_domish(doc)
                self.documents[("private", key_of(converted))] = element_to_bytes(converted)
        elif key == (PUBSUB_OWNER, "pubsub"):
            self.pep_owner(el)
        elif key == (PUBSUB, "pubsub"):
            self.pep_items(el)
        elif key == (PIE_MAM, "archive"):
            for result in el:
                self.archived(result)
        else:
            self.notes.skip(describe(el))

    # -- credentials ---------------------------------------------------------------------------

    def scram(self, el: ET.Element) -> None:
        mechanism = el.get("mechanism") or ""
        hash_name = MECHANISMS.get(mechanism)
        if hash_name is None:
            self.notes.skip(f"<scram-credentials mechanism='{mechanism}'>")
            return
        what = f"<scram-credentials mechanism='{mechanism}'>"
        texts = {split(c.tag)[1]: (c.text or "").strip() for c in el if split(c.tag)[0] == PIE_SCRAM}
        for needed in ("iter-count", "salt", "server-key", "stored-key"):
            if not texts.get(needed):
                raise self.fail(f"{what} has no <{needed}>")
        try:
            iterations = int(texts["iter-count"])
        except ValueError:
            iterations = 0
        if not 1 <= iterations <= 100_000_000:
            raise self.fail(f"<iter-count> of {what} is not a positive number")
        salt, server_key, stored_key = (self.b64(texts[k], k, what) for k in ("salt", "server-key", "stored-key"))
        size = _KEY_SIZES[hash_name]
        if len(server_key) != size or len(stored_key) != size:
            # ejabberd: each value is the base64 text it keeps, encoded once more.
            twice = [_maybe_b64(v) for v in (salt, server_key, stored_key)]
            if any(t is None for t in twice) or len(twice[1] or b"") != size or len(twice[2] or b"") != size:
                raise self.fail(f"the keys of {what} are not {size} bytes")
            salt, server_key, stored_key = (t or b"" for t in twice)
        if not salt:
            raise self.fail(f"<salt> of {what} is empty")
        self.credentials[hash_name] = ScramCredentials(salt=salt, iterations=iterations,
                                                       stored_key=stored_key, server_key=server_key)

    def b64(self, text: str, name: str, what: str) -> bytes:
        value = _maybe_b64(text.encode("ascii", "replace"))
        if value is None:
            raise self.fail(f"<{name}> of {what} is not base64")
        return value

    # -- roster ---------------------------------------------------------------------------------

    def contact(self, el: ET.Element, text: str) -> str:
        prepared = self.notes.prepared.get(text)
        if prepared is not None:
            return prepared
        try:
            jid = JID.parse(text)
        except InvalidJID as e:
            raise self.fail(f"{describe(el)}: '{text}' is not a valid JID: {e}") from None
        if len(self.notes.prepared) >= _PREPARED_MAX:
            self.notes.prepared.clear()
        prepared = self.notes.prepared[text] = jid.bare.full()
        return prepared

    def roster_item(self, item: ET.Element) -> None:
        text = item.get("jid")
        if not text:
            raise self.fail("<item> in the roster has no 'jid'")
        contact = self.contact(item, text)
        subscription = item.get("subscription") or "none"
        if subscription == "remove":
            return
        if subscription not in ("none", "to", "from", "both"):
            raise self.fail(f"<item jid='{text}'> in the roster: subscription '{subscription}' is not one of "
                            f"none, to, from, both")
        ask = item.get("ask")
        if ask not in (None, "subscribe"):
            raise self.fail(f"<item jid='{text}'> in the roster: ask '{ask}' is not 'subscribe'")
        if contact == self.bare:
            self.notes.skip("roster item for the user themself")
            return
        groups = tuple(dict.fromkeys(g.text for g in item if g.tag == _ROSTER_GROUP and g.text))
        self.roster[contact] = RosterItem(
            jid=contact, name=item.get("name") or None, subscription=subscription,  # type: ignore[arg-type]
            ask=ask == "subscribe", pending_in=False, groups=groups,
            approved=item.get("approved") in ("true", "1"))

    def roster_items(self) -> list[RosterItem]:
        items = dict(self.roster)
        for contact in self.pending_in:
            if contact == self.bare:
                continue
            known = items.get(contact)
            if known is None:
                items[contact] = RosterItem(contact, None, "none", False, True, (), hidden=True)
            elif known.subscription in ("none", "to"):
                items[contact] = RosterItem(known.jid, known.name, known.subscription, known.ask, True,
                                            known.groups, known.approved)
        return list(items.values())

    # -- PEP ------------------------------------------------------------------------------------

    def node_list(self) -> list[PubsubNode]:
        names = list(self.nodes) + [n for n in self.items if n not in self.nodes]
        return [self.nodes.get(n) or PubsubNode(n, NodeConfig(max_items=None).values()) for n in names]

    def pep_owner(self, el: ET.Element) -> None:
        configs: dict[str, NodeConfig] = {}
        affiliations: dict[str, dict[str, str]] = {}
        for child in el:
            node = child.get("node")
            kind = split(child.tag)[1]
            if not node:
                raise self.fail(f"{describe(child)} of a PEP node has no 'node'")
            if kind == "configure":
                configs[node] = self.node_config(child)
            elif kind == "affiliations":
                for aff in child:
                    jid, value = aff.get("jid"), aff.get("affiliation")
                    if jid and value and value != "owner":
                        affiliations.setdefault(node, {})[self.contact(aff, jid)] = value
            else:
                self.notes.skip(f"<{kind}> of a PEP node")
        for node in list(configs) + [n for n in affiliations if n not in configs]:
            config = configs.get(node) or NodeConfig(max_items=None)
            self.nodes[node] = PubsubNode(node, config.values(), affiliations.get(node, {}))

    def node_config(self, configure: ET.Element) -> NodeConfig:
        # Items imported are all kept, whatever number the old server's default was.
        config = NodeConfig(max_items=None)
        for form in configure:
            if split(form.tag) != (DATA, "x"):
                continue
            for f in form:
                var = f.get("var")
                values = [v.text or "" for v in f if split(v.tag)[1] == "value"]
                if not var or not values or var == "FORM_TYPE":
                    continue
                try:
                    config = config.apply({var: values}, 1 << 30)
                except ConfigValueError:
                    self.notes.skip(f"PEP node setting {var}={values[0]!r}")
        return config

    def pep_items(self, el: ET.Element) -> None:
        for items in el:
            node = items.get("node")
            if split(items.tag)[1] != "items" or not node:
                self.notes.skip(f"{describe(items)} in <pubsub>")
                continue
            kept = self.items.setdefault(node, [])
            for item in items:
                payload = item[0] if len(item) else None
                if split(item.tag)[1] != "item" or payload is None:
                    self.notes.skip("PEP item without a payload")
                    continue
                item_id = item.get("id") or f"imported-{len(kept) + 1}"
                publisher = item.get("publisher") or self.bare
                # Oldest first, each a microsecond after the one before.
                kept.append(PubsubItem(item_id, publisher, serialize(to_domish(payload), ns.CLIENT),
                                       self.now_us - 1_000_000 + len(kept)))

    # -- archive -------------------------------------------------------------------------------

    def archived(self, result: ET.Element) -> None:
        if split(result.tag) != (MAM, "result"):
            self.notes.skip(f"{describe(result)} in <archive>")
            return
        forwarded = next((c for c in result if split(c.tag) == (FORWARD, "forwarded")), None)
        message = delay = None
        for c in forwarded if forwarded is not None else ():
            uri, name = split(c.tag)
            if (uri, name) == (DELAY, "delay"):
                delay = c
            elif name == "message" and uri in (ns.CLIENT, PIE):
                message = c
        if message is None or delay is None:
            raise self.fail(f"<result id='{result.get('id', '')}'> in <archive> lacks <forwarded> with "
                            f"<delay> and <message>")
        try:
            when = parse_datetime(delay.get("stamp") or "")
        except ValueError as e:
            raise self.fail(f"<delay> of <result id='{result.get('id', '')}'> in <archive>: {e}") from None
        frm, to = message.get("from") or self.bare, message.get("to") or self.bare
        outgoing = self.contact(message, frm) == self.bare
        peer = to if outgoing else frm
        other = JID.parse(peer) if _valid(peer) else JID(None, self.domain)
        self.archive.append(ArchiveEntry(
            self.user, self.domain, make_archive_id(when, os.urandom(6)), when, other.bare.full(),
            other.resource or "", outgoing, serialize(_as_client(to_domish(message)), ns.CLIENT)))


def to_domish(root: ET.Element) -> domish.Element:
    """An ElementTree element as a domish tree, for the serializer and the stores."""
    def convert(el: ET.Element) -> domish.Element:
        uri, name = split(el.tag)
        attrs: dict[str | tuple[str, str], str] = {}
        for key, value in el.attrib.items():
            a_uri, a_name = split(key)
            attrs[(a_uri, a_name) if a_uri else a_name] = value
        return domish.Element((uri, name), uri, attrs)

    top = convert(root)
    todo = [(root, top)]
    while todo:
        source, target = todo.pop()
        if source.text:
            target.addContent(source.text)
        for child in source:
            converted = convert(child)
            target.addChild(converted)
            todo.append((child, converted))
            if child.tail:
                target.addContent(child.tail)
    return top


def _valid(text: str) -> bool:
    try:
        JID.parse(text)
    except InvalidJID:
        return False
    return True


def _as_client(stanza: domish.Element) -> domish.Element:
    """*stanza* in jabber:client: Prosody writes stanzas inside the file in its
    namespace (urn:xmpp:pie:0) by leaving ``xmlns`` out."""
    if stanza.uri == ns.CLIENT:
        return stanza
    old = stanza.uri
    todo = [stanza]
    while todo:
        el = todo.pop()
        if el.uri == old:
            el.uri = ns.CLIENT
            el.defaultUri = ns.CLIENT
            todo.extend(el.elements())
    return stanza


def _maybe_b64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
