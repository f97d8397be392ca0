"""XEP-0045 group chat with the real server: slixmpp's xep_0045 plugin for what
clients do, raw clients for the refusals, and a restart for persistent rooms."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any, Iterator

import pytest
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.e2e.harness import IO_TIMEOUT, RawClient, ServerProcess, logged_in, run, stanza_error

SERVICE = "conference.example.test"
MUC = "http://jabber.org/protocol/muc"
USER_NS = f"{MUC}#user"
OWNER_NS = f"{MUC}#owner"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
CLIENT = "jabber:client"
USERS = {"alice@example.test": "alice-secret", "bob@example.test": "bob-secret",
         "carol@example.test": "carol-secret"}
MUC_CONFIG = {"muc": {"domain": SERVICE}}
PLUGINS = {"xep_0045": {}, "xep_0030": {}, "xep_0004": {}, "xep_0313": {}}


@pytest.fixture(scope="module")
def muc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("muc-server"), overrides=MUC_CONFIG)
    srv.import_users(USERS)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_tail(120)


def owner_submit(fields: dict[str, str]) -> ET.Element:
    query = ET.Element(f"{{{OWNER_NS}}}query")
    x = ET.SubElement(query, "{jabber:x:data}x", type="submit")
    for var, value in {"FORM_TYPE": f"{MUC}#roomconfig", **fields}.items():
        f = ET.SubElement(x, "{jabber:x:data}field", var=var)
        ET.SubElement(f, "{jabber:x:data}value").text = value
    return query


async def configure(client: Any, room: str, **fields: str) -> None:
    iq = client.xmpp.make_iq_set(ito=room)
    iq.xml.append(owner_submit({f"muc#roomconfig_{k}": v for k, v in fields.items()}))
    await iq.send(timeout=IO_TIMEOUT)


async def disco(client: Any, to: str, kind: str = "info") -> ET.Element:
    iq = client.xmpp.make_iq_get(ito=to)
    iq.xml.append(ET.Element(f"{{{DISCO_INFO if kind == 'info' else DISCO_ITEMS}}}query"))
    return (await iq.send(timeout=IO_TIMEOUT)).xml


def codes(presence: Any) -> set[str]:
    return {s.get("code") for s in presence.xml.iter(f"{{{USER_NS}}}status")}


class Groupchat:
    """Every groupchat message a client receives."""

    def __init__(self, client: Any) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        client.xmpp.add_event_handler("groupchat_message", self.queue.put_nowait)

    async def next(self) -> Any:
        return await asyncio.wait_for(self.queue.get(), IO_TIMEOUT)


def test_a_room_with_slixmpp(muc_server: ServerProcess) -> None:
    """Alice creates and configures a room, Bob joins with history; messages are
    reflected to both with the sender's id; a private message, a nick change (303),
    a kick (307) and a ban (<forbidden/> on return) behave as XEP-0045 says."""
    room = f"lobby@{SERVICE}"

    async def scenario() -> None:
        async with logged_in(muc_server, "alice@example.test", USERS["alice@example.test"], plugins=PLUGINS) as a, \
                logged_in(muc_server, "bob@example.test", USERS["bob@example.test"], plugins=PLUGINS) as b:
            items = await disco(a, "example.test", "items")
            assert SERVICE in [i.get("jid") for i in items.iter(f"{{{DISCO_ITEMS}}}item")]
            a_muc, b_muc = a.xmpp.plugin["xep_0045"], b.xmpp.plugin["xep_0045"]
            presence, _subject, _occupants, _history = await a_muc.join_muc_wait(room, "Alice", timeout=IO_TIMEOUT)
            assert {"110", "201"} <= codes(presence)
            form = await a_muc.get_room_config(room, timeout=IO_TIMEOUT)
            assert "muc#roomconfig_roomname" in form.get_fields()
            await configure(a, room, roomname="The Lobby")
            a_chat = Groupchat(a)
            a.xmpp.send_message(mto=room, mbody="before bob", mtype="groupchat")
            await a_chat.next()
            _presence, _subject, occupants, history = await b_muc.join_muc_wait(room, "Bob", maxstanzas=5,
                                                                                timeout=IO_TIMEOUT)
            assert [m["body"] for m in history] == ["before bob"]
            assert [p["from"].resource for p in occupants] == ["Alice", "Bob"]  # others first, self last
            b_chat = Groupchat(b)
            info = await disco(b, room)
            features = {f.get("var") for f in info.iter(f"{{{DISCO_INFO}}}feature")}
            assert {MUC, "muc_temporary", "muc_semianonymous", "urn:xmpp:occupant-id:0"} <= features
            msg = a.xmpp.make_message(mto=room, mbody="hello", mtype="groupchat")
            msg["id"] = "same-id-1"
            msg.send()
            for got in (await a_chat.next(), await b_chat.next()):
                assert (got["body"], got["id"], str(got["from"])) == ("hello", "same-id-1", f"{room}/Alice")
            # XEP-0313 on the room: what was said, with the ids the room stamped, paged by 1.
            archived = [m async for m in b.xmpp.plugin["xep_0313"].iterate(jid=room, rsm={"max": 1})]
            bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in archived]
            assert bodies == ["before bob", "hello"]
            b.xmpp.send_message(mto=f"{room}/Alice", mbody="psst", mtype="chat")
            pm = await a.next_message()
            while pm["type"] != "chat":
                pm = await a.next_message()
            assert (pm["body"], str(pm["from"])) == ("psst", f"{room}/Bob")
            await b_muc.set_self_nick(room, "Robert", timeout=IO_TIMEOUT)
            await asyncio.wait_for(_until(lambda: "Robert" in a_muc.get_roster(room)), IO_TIMEOUT)
            kicked: asyncio.Future = asyncio.get_running_loop().create_future()
            b.xmpp.add_event_handler(f"muc::{room}::got_offline",
                                     lambda p: kicked.done() or kicked.set_result(p))
            await a_muc.set_role(room, "Robert", "none", timeout=IO_TIMEOUT)
            assert {"307", "110"} <= codes(await asyncio.wait_for(kicked, IO_TIMEOUT))
            await a_muc.set_affiliation(room, "outcast", jid="bob@example.test", timeout=IO_TIMEOUT)
            with pytest.raises(PresenceError) as refused:
                await b_muc.join_muc_wait(room, "Bob", timeout=IO_TIMEOUT)
            assert refused.value.condition == "forbidden"

    run(scenario())


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.05)


def _raw(server: ServerProcess, user: str) -> RawClient:
    c = RawClient(server.port, server.cert_path())
    c.login(user, USERS[f"{user}@example.test"])
    return c


def _answer(c: RawClient, ident: str) -> ET.Element:
    while True:
        el = c.next_element()
        if el.get("id") == ident:
            return el


def test_refusals_carry_the_xeps_errors(muc_server: ServerProcess) -> None:
    """Raw clients: a taken nick is <conflict/>, posting without being in the room
    <not-acceptable/>, a members-only room <registration-required/>, a wrong password
    <not-authorized/>, and a room configured for one occupant <service-unavailable/>."""
    room = f"errors@{SERVICE}"
    with _raw(muc_server, "alice") as a, _raw(muc_server, "bob") as b, _raw(muc_server, "carol") as c:
        a.send(f"<presence to='{room}/Alice' id='j1'><x xmlns='{MUC}'/></presence>")
        a.send(f"<iq type='set' to='{room}' id='cfg1'>{ET.tostring(owner_submit({}), encoding='unicode')}</iq>")
        assert _answer(a, "cfg1").get("type") == "result"
        b.send(f"<presence to='{room}/Alice' id='j2'><x xmlns='{MUC}'/></presence>")
        assert stanza_error(_answer(b, "j2")) == "conflict"
        b.send(f"<message to='{room}' type='groupchat' id='m1'><body>hi</body></message>")
        assert stanza_error(_answer(b, "m1")) == "not-acceptable"
        cfg = owner_submit({"muc#roomconfig_membersonly": "1"})
        a.send(f"<iq type='set' to='{room}' id='cfg2'>{ET.tostring(cfg, encoding='unicode')}</iq>")
        assert _answer(a, "cfg2").get("type") == "result"
        b.send(f"<presence to='{room}/Bob' id='j3'><x xmlns='{MUC}'/></presence>")
        assert stanza_error(_answer(b, "j3")) == "registration-required"
        cfg = owner_submit({"muc#roomconfig_membersonly": "0", "muc#roomconfig_passwordprotectedroom": "1",
                            "muc#roomconfig_roomsecret": "sesame", "muc#roomconfig_maxusers": "2"})
        a.send(f"<iq type='set' to='{room}' id='cfg3'>{ET.tostring(cfg, encoding='unicode')}</iq>")
        assert _answer(a, "cfg3").get("type") == "result"
        b.send(f"<presence to='{room}/Bob' id='j4'><x xmlns='{MUC}'><password>wrong</password></x></presence>")
        assert stanza_error(_answer(b, "j4")) == "not-authorized"
        b.send(f"<presence to='{room}/Bob' id='j5'><x xmlns='{MUC}'><password>sesame</password></x></presence>")
        assert _answer(b, "j5").get("type") is None
        c.send(f"<presence to='{room}/Carol' id='j6'><x xmlns='{MUC}'><password>sesame</password></x></presence>")
        assert stanza_error(_answer(c, "j6")) == "service-unavailable"
        b.close()
        while True:  # Bob's connection is gone: the server's unavailable takes him out of the room
            el = a.next_element()
            if el.get("from") == f"{room}/Bob" and el.get("type") == "unavailable":
                break


def test_persistent_room_survives_a_restart(own_server: Any) -> None:
    """A persistent room, its configuration and its owner are there after a restart:
    listed, described, and its owner may configure it while others may not."""
    srv = own_server(overrides=MUC_CONFIG, users=USERS)
    room = f"kept@{SERVICE}"

    async def create() -> None:
        async with logged_in(srv, "alice@example.test", USERS["alice@example.test"], plugins=PLUGINS) as a:
            await a.xmpp.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=IO_TIMEOUT)
            await configure(a, room, roomname="Kept", persistentroom="1")

    async def check() -> None:
        async with logged_in(srv, "alice@example.test", USERS["alice@example.test"], plugins=PLUGINS) as a, \
                logged_in(srv, "bob@example.test", USERS["bob@example.test"], plugins=PLUGINS) as b:
            items = await disco(b, SERVICE, "items")
            assert [(i.get("jid"), i.get("name")) for i in items.iter(f"{{{DISCO_ITEMS}}}item")] == [(room, "Kept")]
            info = await disco(b, room)
            assert "muc_persistent" in {f.get("var") for f in info.iter(f"{{{DISCO_INFO}}}feature")}
            with pytest.raises(IqError) as refused:
                await b.xmpp.plugin["xep_0045"].get_room_config(room, timeout=IO_TIMEOUT)
            assert refused.value.condition == "forbidden"
            form = await a.xmpp.plugin["xep_0045"].get_room_config(room, timeout=IO_TIMEOUT)
            assert form.get_fields()["muc#roomconfig_roomname"]["value"] == "Kept"

    run(create())
    srv.stop()
    srv.start()
    run(check())


def test_iq_between_occupants_and_the_room_avatar(muc_server: ServerProcess) -> None:
    """XEP-0045 §17.3 with slixmpp's own answers: Alice asks Bob's occupant address for
    his software version and pings it, and gets the answers from that address; Bob
    asks Alice's vCard through the room (answered by her server for her bare JID).
    The owner sets the room's vCard: Bob gets the room's presence with the photo hash
    (XEP-0153), and its disco#info carries muc#roominfo_avatarhash."""
    import base64
    import hashlib
    room = f"talk@{SERVICE}"
    plugins = {**PLUGINS, "xep_0092": {}, "xep_0199": {}, "xep_0054": {}}

    async def scenario() -> None:
        async with logged_in(muc_server, "alice@example.test", USERS["alice@example.test"], plugins=plugins) as a, \
                logged_in(muc_server, "bob@example.test", USERS["bob@example.test"], plugins=plugins) as b:
            await a.xmpp.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=IO_TIMEOUT)
            await configure(a, room)
            await b.xmpp.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=IO_TIMEOUT)
            version = await a.xmpp.plugin["xep_0092"].get_version(f"{room}/Bob", timeout=IO_TIMEOUT)
            assert str(version["from"]) == f"{room}/Bob" and version["software_version"]["name"]
            await a.xmpp.plugin["xep_0199"].ping(f"{room}/Bob", timeout=IO_TIMEOUT)
            mine = a.xmpp.plugin["xep_0054"].make_vcard()
            mine["FN"] = "Alice Liddell"
            await a.xmpp.plugin["xep_0054"].publish_vcard(mine, timeout=IO_TIMEOUT)
            vcard = await b.xmpp.plugin["xep_0054"].get_vcard(f"{room}/Alice", timeout=IO_TIMEOUT)
            assert str(vcard["from"]) == f"{room}/Alice" and vcard["vcard_temp"]["FN"] == "Alice Liddell"

            photo = b"room avatar bytes"
            digest = hashlib.sha1(photo).hexdigest()
            announced: asyncio.Future = asyncio.get_running_loop().create_future()

            def room_presence(p: Any) -> None:
                if str(p["from"]) == room and digest in str(p) and not announced.done():
                    announced.set_result(p)
            # slixmpp's roster ignores presence from a joined room's JID, so the
            # "presence" event never fires for it: watch the stream itself.
            update = MatchXPath(f"{{{CLIENT}}}presence/{{vcard-temp:x:update}}x")
            b.xmpp.register_handler(Callback("room avatar", update, room_presence))
            iq = a.xmpp.make_iq_set(ito=room)
            v = ET.SubElement(iq.xml, "{vcard-temp}vCard")
            ph = ET.SubElement(v, "{vcard-temp}PHOTO")
            ET.SubElement(ph, "{vcard-temp}TYPE").text = "image/png"
            ET.SubElement(ph, "{vcard-temp}BINVAL").text = base64.b64encode(photo).decode()
            await iq.send(timeout=IO_TIMEOUT)
            await asyncio.wait_for(announced, IO_TIMEOUT)
            info = ET.tostring(await disco(b, room), encoding="unicode")
            assert "muc#roominfo_avatarhash" in info and digest in info
            got = b.xmpp.make_iq_get(ito=room)
            got.xml.append(ET.Element("{vcard-temp}vCard"))
            assert base64.b64encode(photo).decode() in str(await got.send(timeout=IO_TIMEOUT))

    run(scenario())


def test_bookmark_autojoin_with_pep(muc_server: ServerProcess) -> None:
    """XEP-0402 through fedxmpp's PEP: Carol bookmarks a persistent room with autojoin
    (with the publish-options the XEP requires), reconnects, reads her bookmarks as a
    client does at login, and joins every autojoin room under its bookmarked nick."""
    room = f"bookmarked@{SERVICE}"
    bookmarks = "urn:xmpp:bookmarks:1"
    plugins = {**PLUGINS, "xep_0060": {}, "xep_0402": {}}
    carol = ("carol@example.test", USERS["carol@example.test"])

    async def bookmark() -> None:
        async with logged_in(muc_server, *carol, plugins=plugins) as c:
            await c.xmpp.plugin["xep_0045"].join_muc_wait(room, "Carol", timeout=IO_TIMEOUT)
            await configure(c, room, persistentroom="1", roomname="Bookmarked")
            conference = c.xmpp.plugin["xep_0402"].stanza.Conference()
            conference["name"] = "Bookmarked"
            conference["autojoin"] = True
            conference["nick"] = "Caro"
            options = c.xmpp.plugin["xep_0004"].make_form("submit")
            options.add_field("FORM_TYPE", ftype="hidden",
                              value="http://jabber.org/protocol/pubsub#publish-options")
            for var, value in (("pubsub#persist_items", "true"), ("pubsub#max_items", "max"),
                               ("pubsub#send_last_published_item", "never"),
                               ("pubsub#access_model", "whitelist")):
                options.add_field(var, value=value)
            await c.xmpp.plugin["xep_0060"].publish("carol@example.test", bookmarks, id=room, payload=conference,
                                                    options=options, timeout=IO_TIMEOUT)
            c.xmpp.plugin["xep_0045"].leave_muc(room, "Carol")

    async def autojoin() -> None:
        async with logged_in(muc_server, *carol, plugins=plugins) as c:
            items = await c.xmpp.plugin["xep_0060"].get_items("carol@example.test", bookmarks, timeout=IO_TIMEOUT)
            wanted = [(item["id"], item["conference"]["nick"]) for item in items["pubsub"]["items"]
                      if item["conference"]["autojoin"]]
            assert wanted == [(room, "Caro")]
            for jid, nick in wanted:
                presence, _subject, _occupants, _history = await c.xmpp.plugin["xep_0045"].join_muc_wait(
                    jid, nick, timeout=IO_TIMEOUT)
                assert "110" in codes(presence) and str(presence["from"]) == f"{room}/Caro"
            info = await disco(c, room)
            assert "Bookmarked" in ET.tostring(info, encoding="unicode")

    run(bookmark())
    run(autojoin())
