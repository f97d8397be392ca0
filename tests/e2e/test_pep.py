"""XEP-0163 personal eventing with real clients: +notify through entity
capabilities, access models, avatars (XEP-0084) and bookmarks (XEP-0402)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.e2e.conftest import USERS
from tests.e2e.harness import IO_TIMEOUT, Client, logged_in, run
from tests.e2e.im import Presences, befriend, manual_subscriptions

ANTONIO, MARIA, TOBY, FESTE = "antonio@example.test", "maria@example.test", "toby@example.test", "feste@example.test"
PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = f"{PUBSUB}#event"
ERRORS = f"{PUBSUB}#errors"
CLIENT = "jabber:client"
NICK = "http://jabber.org/protocol/nick"
GEOLOC = "http://jabber.org/protocol/geoloc"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_META = "urn:xmpp:avatar:metadata"
BOOKMARKS = "urn:xmpp:bookmarks:1"
CAPS = {"xep_0115": {}, "xep_0163": {}}


class Events:
    """Every pubsub event message a client receives: (node, [item ids], payload text)."""

    def __init__(self, client: Client) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        client.xmpp.register_handler(Callback("pep events", MatchXPath(f"{{{CLIENT}}}message/{{{EVENT}}}event"),
                                              self._got))

    def _got(self, message: Any) -> None:
        items = message.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
        if items is None:
            return
        found = items.findall(f"{{{EVENT}}}item")
        text = "".join(ET.tostring(child, encoding="unicode") for item in found for child in item)
        self.queue.put_nowait((items.get("node"), [i.get("id") for i in found], text))

    async def next(self, timeout: float = IO_TIMEOUT) -> tuple[str, list[str], str]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def drain(self) -> list[tuple[str, list[str], str]]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


async def pubsub(client: Client, kind: str, inner: str, to: str | None = None) -> ET.Element:
    iq = client.xmpp.make_iq_set(ito=to) if kind == "set" else client.xmpp.make_iq_get(ito=to)
    iq.xml.append(ET.fromstring(f"<pubsub xmlns='{PUBSUB}'>{inner}</pubsub>"))
    return (await iq.send(timeout=IO_TIMEOUT)).xml


def publish(node: str, item_id: str, payload: str, options: dict[str, str] | None = None) -> str:
    opts = ""
    if options:
        opts = ("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>{PUBSUB}#publish-options</value></field>"
                + "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in options.items())
                + "</x></publish-options>")
    return f"<publish node='{node}'><item id='{item_id}'>{payload}</item></publish>{opts}"


async def interested(client: Client, *nodes: str, to: str | None = None) -> None:
    """Advertise '<node>+notify' in caps and send presence (to *to*, or broadcast)."""
    client.xmpp.plugin["xep_0163"].add_interest(list(nodes))
    await client.xmpp.plugin["xep_0115"].update_caps(broadcast=False)
    client.xmpp.send_presence(pto=to)
    await client.barrier()


def test_publish_reaches_a_contact_with_notify_and_no_one_else(server):
    """Antonio publishes; maria (a contact with nick+notify) gets the last nick when
    she comes online and then the new one; toby (a contact interested only in
    geoloc) gets geoloc, never the nick; feste (no subscription, nick+notify and
    avatar+notify, directed presence) gets the open avatar node, never the nick,
    whose access model is 'presence'."""
    async def scenario():
        async with logged_in(server, f"{ANTONIO}/a", USERS[ANTONIO]) as antonio, \
                logged_in(server, f"{MARIA}/m", USERS[MARIA], plugins=CAPS) as maria, \
                logged_in(server, f"{TOBY}/t", USERS[TOBY], plugins=CAPS) as toby, \
                logged_in(server, f"{FESTE}/f", USERS[FESTE], plugins=CAPS) as feste:
            manual_subscriptions(antonio, maria, toby)
            pa, pm, pt = Presences(antonio), Presences(maria), Presences(toby)
            for c in (antonio, maria, toby):
                await c.available()
            await befriend(antonio, pa, maria, pm)
            await befriend(antonio, pa, toby, pt)
            events = {name: Events(c) for name, c in (("maria", maria), ("toby", toby), ("feste", feste))}

            await pubsub(antonio, "set", publish(NICK, "current", f"<nick xmlns='{NICK}'>Antonio</nick>"))
            await pubsub(antonio, "set", publish(GEOLOC, "current", f"<geoloc xmlns='{GEOLOC}'><locality>Illyria"
                                                                    "</locality></geoloc>"))
            await pubsub(antonio, "set", publish(AVATAR_META, "abc", f"<metadata xmlns='{AVATAR_META}'/>",
                                                 {"access_model": "open"}))

            await interested(maria, NICK)
            await interested(toby, GEOLOC)
            await interested(feste, NICK, AVATAR_META, to=ANTONIO)
            node, ids, text = await events["maria"].next()
            assert (node, ids) == (NICK, ["current"]) and ">Antonio<" in text
            node, ids, _ = await events["toby"].next()
            assert (node, ids) == (GEOLOC, ["current"])
            node, ids, _ = await events["feste"].next()
            assert (node, ids) == (AVATAR_META, ["abc"])

            await pubsub(antonio, "set", publish(NICK, "current", f"<nick xmlns='{NICK}'>Sebastian's friend</nick>"))
            node, ids, text = await events["maria"].next()
            assert (node, ids) == (NICK, ["current"]) and "Sebastian's friend" in text
            for c in (antonio, toby, feste):
                await c.barrier()
            assert events["toby"].drain() == [] and events["feste"].drain() == []
            assert events["maria"].drain() == []

    run(scenario())


def test_avatar_and_bookmarks_round_trip(server):
    """An avatar published as XEP-0084 data and metadata (open) is read back by a
    contact by id; bookmarks published per XEP-0402 (whitelist, max items) are
    read back whole by the owner's other device and refused to the contact with
    <not-allowed/> and <closed-node/>."""
    avatar = base64.b64encode(bytes(range(256)) * 4).decode()
    digest = hashlib.sha1(base64.b64decode(avatar)).hexdigest()
    bookmark_options = {"persist_items": "true", "max_items": "max", "send_last_published_item": "never",
                        "access_model": "whitelist"}

    async def scenario():
        async with logged_in(server, f"{ANTONIO}/phone", USERS[ANTONIO]) as phone, \
                logged_in(server, f"{ANTONIO}/laptop", USERS[ANTONIO]) as laptop, \
                logged_in(server, f"{MARIA}/m2", USERS[MARIA]) as maria:
            await pubsub(phone, "set", publish(AVATAR_DATA, digest, f"<data xmlns='{AVATAR_DATA}'>{avatar}</data>",
                                               {"access_model": "open"}))
            await pubsub(phone, "set", publish(
                AVATAR_META, digest, f"<metadata xmlns='{AVATAR_META}'><info id='{digest}' bytes='1024' "
                                     "type='image/png'/></metadata>", {"access_model": "open"}))
            got = await pubsub(maria, "get", f"<items node='{AVATAR_DATA}'><item id='{digest}'/></items>", to=ANTONIO)
            data = got.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{{AVATAR_DATA}}}data")
            assert data is not None and hashlib.sha1(base64.b64decode(data.text)).hexdigest() == digest

            rooms = ["orchard@muc.example.test", "chapel@muc.example.test"]
            for room in rooms:
                await pubsub(phone, "set", publish(
                    BOOKMARKS, room, f"<conference xmlns='{BOOKMARKS}' name='{room}' autojoin='true'>"
                                     "<nick>Antonio</nick></conference>", bookmark_options))
            got = await pubsub(laptop, "get", f"<items node='{BOOKMARKS}'/>")
            items = got.findall(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items/{{{PUBSUB}}}item")
            assert [i.get("id") for i in items] == rooms
            assert items[0].find(f"{{{BOOKMARKS}}}conference/{{{BOOKMARKS}}}nick").text == "Antonio"
            with pytest.raises(IqError) as refused:
                await pubsub(maria, "get", f"<items node='{BOOKMARKS}'/>", to=ANTONIO)
            assert refused.value.iq["error"]["condition"] == "not-allowed"
            assert refused.value.iq.xml.find(f"{{{CLIENT}}}error/{{{ERRORS}}}closed-node") is not None

    run(scenario())
