"""An :class:`~fedxmpp.storage.AccountBundle` written as a XEP-0227 ``<user/>`` element.

The reverse of :mod:`fedxmpp.portable.inbound`: SCRAM credentials (we keep no
passwords), the roster with pending inbound requests as ``<presence/>``,
offline messages, vCard, private XML, PEP nodes with their items, and the
message archive.  Other keyval documents (blocking list, last activity) have no
place in XEP-0227 and are not written.
"""

from __future__ import annotations

import base64

from twisted.words.xish import domish

from fedxmpp.features._shared import element_from_bytes
from fedxmpp.features.mam import stamp
from fedxmpp.features.pep.nodeconfig import NodeConfig
from fedxmpp.portable.inbound import (
    DATA, DELAY, FORWARD, MAM, PIE_MAM, PIE_SCRAM, PRIVATE, PUBSUB, PUBSUB_OWNER, ROSTER,
)
from fedxmpp.portable.reader import PIE
from fedxmpp.storage import AccountBundle
from fedxmpp.xml import ns
from fedxmpp.xml.parser import parse_stanza
from fedxmpp.xml.serialize import serialize

_MECHANISM = {"sha-1": "SCRAM-SHA-1", "sha-256": "SCRAM-SHA-256"}
_MAX_STANZA = 1 << 24


def user_xml(bundle: AccountBundle, *, standalone: bool = False) -> str:
    """The ``<user/>`` element of *bundle*, serialised inside a urn:xmpp:pie:0 parent,
    or with its own ``xmlns`` when *standalone* (the root of a file)."""
    return serialize(user_element(bundle), "" if standalone else PIE)


def user_element(b: AccountBundle) -> domish.Element:
    user = domish.Element((PIE, "user"))
    user["name"] = b.user
    for hash_name, creds in sorted(b.credentials.items()):
        scram = user.addElement((PIE_SCRAM, "scram-credentials"))
        scram["mechanism"] = _MECHANISM[hash_name]
        scram.addElement("iter-count", content=str(creds.iterations))
        scram.addElement("salt", content=_b64(creds.salt))
        scram.addElement("server-key", content=_b64(creds.server_key))
        scram.addElement("stored-key", content=_b64(creds.stored_key))
    bare = f"{b.user}@{b.domain}"
    shown = [i for i in b.roster if not i.hidden]
    if shown:
        query = user.addElement((ROSTER, "query"))
        for i in shown:
            item = query.addElement("item")
            item["jid"] = i.jid
            item["subscription"] = i.subscription
            if i.name:
                item["name"] = i.name
            if i.ask:
                item["ask"] = "subscribe"
            if i.approved:
                item["approved"] = "true"
            for group in i.groups:
                item.addElement("group", content=group)
    for i in b.roster:
        if i.pending_in:
            presence = user.addElement((ns.CLIENT, "presence"))
            presence["from"] = i.jid
            presence["to"] = bare
            presence["type"] = "subscribe"
    if b.offline:
        offline = user.addElement((PIE, "offline-messages"))
        for text in b.offline:
            stanza = parse_stanza(text, _MAX_STANZA, 256)
            if stanza is not None:
                offline.addChild(stanza)
    vcard = b.documents.get(("vcard", ""))
    if vcard is not None:
        user.addChild(element_from_bytes(vcard))
    private = [value for (store, _), value in sorted(b.documents.items()) if store == "private"]
    if private:
        query = user.addElement((PRIVATE, "query"))
        for value in private:
            query.addChild(element_from_bytes(value))
    if b.pep:
        owner = user.addElement((PUBSUB_OWNER, "pubsub"))
        for node, _ in b.pep:
            configure = owner.addElement("configure")
            configure["node"] = node.node
            configure.addChild(_config_form(node.config))
            if node.affiliations:
                affiliations = owner.addElement("affiliations")
                affiliations["node"] = node.node
                for jid, affiliation in sorted(node.affiliations.items()):
                    aff = affiliations.addElement("affiliation")
                    aff["jid"] = jid
                    aff["affiliation"] = affiliation
        pubsub = user.addElement((PUBSUB, "pubsub"))
        for node, items in b.pep:
            if not items:
                continue
            items_el = pubsub.addElement("items")
            items_el["node"] = node.node
            for item in items:
                item_el = items_el.addElement("item")
                item_el["id"] = item.item_id
                item_el["publisher"] = item.publisher
                payload = parse_stanza(item.payload, _MAX_STANZA, 256)
                if payload is not None:
                    item_el.addChild(payload)
    if b.archive:
        archive = user.addElement((PIE_MAM, "archive"))
        for entry in b.archive:
            message = parse_stanza(entry.stanza, _MAX_STANZA, 256)
            if message is None:
                continue
            result = archive.addElement((MAM, "result"))
            result["id"] = entry.archive_id
            forwarded = result.addElement((FORWARD, "forwarded"))
            delay = forwarded.addElement((DELAY, "delay"))
            delay["stamp"] = stamp(entry.timestamp)
            forwarded.addChild(message)
    return user


def _config_form(values: dict[str, str]) -> domish.Element:
    form = domish.Element((DATA, "x"))
    form["type"] = "submit"
    fields = {"FORM_TYPE": f"{PUBSUB}#node_config", **NodeConfig.from_values(values).values()}
    for var, value in fields.items():
        f = form.addElement("field")
        f["var"] = var
        if var == "FORM_TYPE":
            f["type"] = "hidden"
        f.addElement("value", content=value)
    return form


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
