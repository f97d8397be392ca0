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
from collections import Counter
from dataclasses import dataclass, field

from twisted.words.xish import domish

from fedxmpp.features._shared import element_to_bytes
from fedxmpp.features.mam import parse_datetime
from fedxmpp.features.pep.nodeconfig import ConfigValueError, NodeConfig
from fedxmpp.features.private import RESERVED as PRIVATE_RESERVED, key_of
from fedxmpp.portable.reader import PIE, PieError, UserElement, describe, where
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


@dataclass
class Notes:
    """What the import skipped, by description, for one summary at the end."""

    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, what: str) -> None:
        self.skipped[what] += 1


@dataclass(frozen=True)
class ParsedAccount:
    bundle: AccountBundle
    #: The file's password, to hash; None when the bundle carries SCRAM credentials.
    password: str | None
    where: str


def parse_user(u: UserElement, notes: Notes, *, now: float | None = None) -> ParsedAccount:
    """The account in *u*; :class:`PieError` naming the file, line and element for
    anything that cannot be imported."""
    user_el = u.element
    try:
        domain = prep_domain(u.host)
    except InvalidJID as e:
        raise PieError(f"{u.where}: <host jid='{u.host}'> is not a valid domain: {e}") from None
    name = user_el.getAttribute("name")
    if not name:
        raise PieError(f"{u.where}: <user> has no 'name' attribute")
    try:
        user = prep_local(name)
    except InvalidJID as e:
        raise PieError(f"{u.where}: <user name='{name}'> is not a valid localpart: {e}") from None
    reading = _Reading(user, domain, notes, time.time() if now is None else now)
    for child in user_el.elements():
        reading.element(child)
    password = user_el.getAttribute("password")
    if password is None and not reading.credentials:
        raise PieError(f"{u.where}: <user name='{name}'> has neither a password nor SCRAM credentials")
    bundle = AccountBundle(
        user, domain, {} if password is not None else reading.credentials,
        roster=reading.roster_items(), documents=reading.documents, offline=reading.offline,
        pep=[(node, reading.items.get(node.node, [])) for node in reading.node_list()],
        archive=reading.archive)
    return ParsedAccount(bundle, password, u.where)


class _Reading:
    def __init__(self, user: str, domain: str, notes: Notes, now: float) -> None:
        self.user = user
        self.domain = domain
        self.bare = f"{user}@{domain}"
        self.notes = notes
        self.now_us = int(now * 1_000_000)
        self.credentials: dict[HashName, ScramCredentials] = {}
        self.roster: dict[str, RosterItem] = {}
        self.pending_in: list[str] = []
        self.documents: dict[tuple[str, str], bytes] = {}
        self.offline: list[str] = []
        self.nodes: dict[str, PubsubNode] = {}
        self.items: dict[str, list[PubsubItem]] = {}
        self.archive: list[ArchiveEntry] = []

    def element(self, el: domish.Element) -> None:
        key = (el.uri, el.name)
        if key == (PIE_SCRAM, "scram-credentials"):
            self.scram(el)
        elif key == (ROSTER, "query"):
            for item in el.elements():
                if (item.uri, item.name) == (ROSTER, "item"):
                    self.roster_item(item)
        elif el.name == "presence" and el.uri in (ns.CLIENT, PIE):
            if el.getAttribute("type") == "subscribe" and el.getAttribute("from"):
                self.pending_in.append(self.contact(el, el.getAttribute("from")))
            else:
                self.notes.skip("<presence> other than a subscription request")
        elif key == (PIE, "offline-messages"):
            for message in el.elements():
                if message.name == "message" and message.uri in (ns.CLIENT, PIE):
                    self.offline.append(serialize(_as_client(message), ns.CLIENT))
                else:
                    self.notes.skip(f"{describe(message)} in <offline-messages>")
        elif key == (VCARD, "vCard"):
            if any(True for _ in el.elements()):
                self.documents[("vcard", "")] = element_to_bytes(el)
        elif key == (PRIVATE, "query"):
            for doc in el.elements():
                if not doc.uri or doc.uri in PRIVATE_RESERVED:
                    raise PieError(f"{where(doc)}: {describe(doc)} cannot be kept in private XML storage "
                                   f"(reserved namespace)")
                self.documents[("private", key_of(doc))] = element_to_bytes(doc)
        elif key == (PUBSUB_OWNER, "pubsub"):
            self.pep_owner(el)
        elif key == (PUBSUB, "pubsub"):
            self.pep_items(el)
        elif key == (PIE_MAM, "archive"):
            for result in el.elements():
                self.archived(result)
        else:
            self.notes.skip(describe(el))

    # -- credentials ---------------------------------------------------------------------------

    def scram(self, el: domish.Element) -> None:
        mechanism = el.getAttribute("mechanism") or ""
        hash_name = MECHANISMS.get(mechanism)
        if hash_name is None:
            self.notes.skip(f"<scram-credentials mechanism='{mechanism}'>")
            return
        texts = {c.name: str(c).strip() for c in el.elements() if c.uri == PIE_SCRAM}
        for needed in ("iter-count", "salt", "server-key", "stored-key"):
            if not texts.get(needed):
                raise PieError(f"{where(el)}: <scram-credentials mechanism='{mechanism}'> has no <{needed}>")
        try:
            iterations = int(texts["iter-count"])
        except ValueError:
            iterations = 0
        if not 1 <= iterations <= 100_000_000:
            raise PieError(f"{where(el)}: <iter-count> of <scram-credentials mechanism='{mechanism}'> "
                           f"is not a positive number")
        salt, server_key, stored_key = (_b64(texts[k], el, k) for k in ("salt", "server-key", "stored-key"))
        size = _KEY_SIZES[hash_name]
        if len(server_key) != size or len(stored_key) != size:
            # ejabberd: each value is the base64 text it keeps, encoded once more.
            twice = [_maybe_b64(v) for v in (salt, server_key, stored_key)]
            if any(t is None for t in twice) or len(twice[1] or b"") != size or len(twice[2] or b"") != size:
                raise PieError(f"{where(el)}: the keys of <scram-credentials mechanism='{mechanism}'> "
                               f"are not {size} bytes")
            salt, server_key, stored_key = (t or b"" for t in twice)
        if not salt:
            raise PieError(f"{where(el)}: <salt> of <scram-credentials mechanism='{mechanism}'> is empty")
        self.credentials[hash_name] = ScramCredentials(salt=salt, iterations=iterations,
                                                       stored_key=stored_key, server_key=server_key)

    # -- roster ---------------------------------------------------------------------------------

    def contact(self, el: domish.Element, text: str) -> str:
        try:
            jid = JID.parse(text)
        except InvalidJID as e:
            raise PieError(f"{where(el)}: {describe(el)}: '{text}' is not a valid JID: {e}") from None
        return jid.bare.full()

    def roster_item(self, item: domish.Element) -> None:
        text = item.getAttribute("jid")
        if not text:
            raise PieError(f"{where(item)}: <item> in the roster of {self.bare} has no 'jid'")
        contact = self.contact(item, text)
        subscription = item.getAttribute("subscription") or "none"
        if subscription == "remove":
            return
        if subscription not in ("none", "to", "from", "both"):
            raise PieError(f"{where(item)}: <item jid='{text}'> in the roster of {self.bare}: subscription "
                           f"'{subscription}' is not one of none, to, from, both")
        ask = item.getAttribute("ask")
        if ask not in (None, "subscribe"):
            raise PieError(f"{where(item)}: <item jid='{text}'> in the roster of {self.bare}: ask '{ask}' "
                           f"is not 'subscribe'")
        groups = tuple(dict.fromkeys(str(g) for g in item.elements() if g.name == "group" and str(g)))
        if contact == self.bare:
            self.notes.skip("roster item for the user themself")
            return
        self.roster[contact] = RosterItem(
            jid=contact, name=item.getAttribute("name") or None, subscription=subscription,  # type: ignore[arg-type]
            ask=ask == "subscribe", pending_in=False, groups=groups,
            approved=item.getAttribute("approved") in ("true", "1"))

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

    def pep_owner(self, el: domish.Element) -> None:
        configs: dict[str, NodeConfig] = {}
        affiliations: dict[str, dict[str, str]] = {}
        for child in el.elements():
            node = child.getAttribute("node")
            if not node:
                raise PieError(f"{where(child)}: {describe(child)} has no 'node'")
            if child.name == "configure":
                configs[node] = self.node_config(child, node)
            elif child.name == "affiliations":
                for aff in child.elements():
                    jid, value = aff.getAttribute("jid"), aff.getAttribute("affiliation")
                    if jid and value and value != "owner":
                        affiliations.setdefault(node, {})[self.contact(aff, jid)] = value
            else:
                self.notes.skip(f"<{child.name}> of a PEP node")
        for node in list(configs) + [n for n in affiliations if n not in configs]:
            config = configs.get(node) or NodeConfig(max_items=None)
            self.nodes[node] = PubsubNode(node, config.values(), affiliations.get(node, {}))

    def node_config(self, configure: domish.Element, node: str) -> NodeConfig:
        # Items imported are all kept, whatever number the old server's default was.
        config = NodeConfig(max_items=None)
        for form in configure.elements():
            if (form.uri, form.name) != (DATA, "x"):
                continue
            for f in form.elements():
                var = f.getAttribute("var")
                values = [str(v) for v in f.elements() if v.name == "value"]
                if not var or not values or var == "FORM_TYPE":
                    continue
                try:
                    config = config.apply({var: values}, 1 << 30)
                except ConfigValueError:
                    self.notes.skip(f"PEP node setting {var}={values[0]!r}")
        return config

    def pep_items(self, el: domish.Element) -> None:
        for items in el.elements():
            node = items.getAttribute("node")
            if items.name != "items" or not node:
                self.notes.skip(f"{describe(items)} in <pubsub>")
                continue
            kept = self.items.setdefault(node, [])
            for item in items.elements():
                payload = next(iter(item.elements()), None)
                if item.name != "item" or payload is None:
                    self.notes.skip("PEP item without a payload")
                    continue
                item_id = item.getAttribute("id") or f"imported-{len(kept) + 1}"
                publisher = item.getAttribute("publisher") or self.bare
                # Oldest first, each a microsecond after the one before.
                kept.append(PubsubItem(item_id, publisher, serialize(payload, ns.CLIENT),
                                       self.now_us - 1_000_000 + len(kept)))

    # -- archive -------------------------------------------------------------------------------

    def archived(self, result: domish.Element) -> None:
        if (result.uri, result.name) != (MAM, "result"):
            self.notes.skip(f"{describe(result)} in <archive>")
            return
        forwarded = next((c for c in result.elements() if (c.uri, c.name) == (FORWARD, "forwarded")), None)
        message = delay = None
        for c in forwarded.elements() if forwarded is not None else ():
            if (c.uri, c.name) == (DELAY, "delay"):
                delay = c
            elif c.name == "message" and c.uri in (ns.CLIENT, PIE):
                message = c
        if message is None or delay is None:
            raise PieError(f"{where(result)}: <result> in <archive> lacks <forwarded> with <delay> and <message>")
        try:
            when = parse_datetime(delay.getAttribute("stamp") or "")
        except ValueError as e:
            raise PieError(f"{where(delay)}: <delay> in <archive>: {e}") from None
        frm, to = message.getAttribute("from") or self.bare, message.getAttribute("to") or self.bare
        outgoing = self.contact(message, frm) == self.bare
        other = JID.parse(to if outgoing else frm) if _valid(to if outgoing else frm) else JID(None, self.domain)
        self.archive.append(ArchiveEntry(
            self.user, self.domain, make_archive_id(when, os.urandom(6)), when, other.bare.full(),
            other.resource or "", outgoing, serialize(_as_client(message), ns.CLIENT)))


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


def _b64(text: str, el: domish.Element, name: str) -> bytes:
    value = _maybe_b64(text.encode("ascii", "replace"))
    if value is None:
        raise PieError(f"{where(el)}: <{name}> of <scram-credentials> is not base64")
    return value


def _maybe_b64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
