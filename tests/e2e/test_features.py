"""The everyday server XEPs against the real server: disco, caps, version, time, ping,
last activity, private XML storage and vCards (which survive a restart)."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET

import pytest

from tests.e2e.conftest import USERS
from tests.e2e.harness import CLIENT, SASL_NS, RawClient, logged_in, run, stanza_error, to_text

CAPS_NS = "http://jabber.org/protocol/caps"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"

# What the modules of fedxmpp.features implement (the IM core adds its own).
FEATURES = {
    DISCO_INFO, DISCO_ITEMS, "urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:time", "jabber:iq:last",
    "vcard-temp", "jabber:iq:private", "urn:xmpp:blocking", "jabber:iq:register",
}


def registered(server) -> tuple[set[str], set[str]]:
    """The server and account features that the composition root registers for the
    server's configuration (app.build, without starting anything)."""
    from twisted.internet.testing import MemoryReactorClock

    from fedxmpp import app, config
    disco = app.build(config.load(server.config_path), MemoryReactorClock()).features.disco
    return set(disco.server_features), set(disco.account_features)


def plugins(client, *names: str) -> None:
    for name in names:
        client.xmpp.register_plugin(name)


async def raw_iq(client, itype: str, payload: str, to: str | None = None):
    """Send an iq with *payload* (XML text) from a slixmpp client; its result."""
    iq = client.xmpp.make_iq_get(ito=to) if itype == "get" else client.xmpp.make_iq_set(ito=to)
    iq.xml.append(ET.fromstring(payload))
    return await iq.send(timeout=10)


def test_server_disco_lists_exactly_what_is_supported(server):
    """disco#info on the domain: identity server/im and, each once, exactly the
    features registered by the code the server runs (nothing claimed that is not
    implemented), among them every one of fedxmpp.features; disco#items: an
    empty list (no components on this server)."""
    async def scenario():
        async with logged_in(server, "wendy@example.test/disco", USERS["wendy@example.test"]) as wendy:
            plugins(wendy, "xep_0030")
            info = await wendy.xmpp.plugin["xep_0030"].get_info(jid="example.test", timeout=10)
            assert {(i[0], i[1]) for i in info["disco_info"]["identities"]} == {("server", "im")}
            listed = list(info["disco_info"]["features"])
            assert sorted(listed) == sorted(registered(server)[0])
            assert FEATURES <= set(listed)
            items = await wendy.xmpp.plugin["xep_0030"].get_items(jid="example.test", timeout=10)
            assert list(items["disco_items"]["items"]) == []

    run(scenario())


def test_account_disco_for_self_and_for_a_stranger(server):
    """A user's own bare JID answers account/registered (and pubsub/pep, XEP-0163)
    with the registered account features; another user's, without a presence
    subscription, <service-unavailable/> (XEP-0030 §8)."""
    async def scenario():
        from slixmpp.exceptions import IqError
        async with logged_in(server, "wendy@example.test/acct", USERS["wendy@example.test"]) as wendy:
            plugins(wendy, "xep_0030")
            info = await wendy.xmpp.plugin["xep_0030"].get_info(jid="wendy@example.test", timeout=10)
            assert {(i[0], i[1]) for i in info["disco_info"]["identities"]} == {("account", "registered"),
                                                                              ("pubsub", "pep")}
            assert set(info["disco_info"]["features"]) == registered(server)[1]
            with pytest.raises(IqError) as err:
                await wendy.xmpp.plugin["xep_0030"].get_info(jid="victor@example.test", timeout=10)
            assert err.value.iq["error"]["condition"] == "service-unavailable"

    run(scenario())


def caps_ver(query: ET.Element) -> str:
    """XEP-0115 §5.1, written here independently of the server's code."""
    identities = sorted((i.get("category", ""), i.get("type", ""), i.get("{http://www.w3.org/XML/1998/namespace}lang", ""),
                         i.get("name", "")) for i in query.findall(f"{{{DISCO_INFO}}}identity"))
    features = sorted(f.get("var", "") for f in query.findall(f"{{{DISCO_INFO}}}feature"))
    s = "".join("/".join(i) + "<" for i in identities) + "".join(f + "<" for f in features)
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def test_caps_in_stream_features_verify(server):
    """The features after authentication carry the server's caps; disco#info to
    node#ver hashes to exactly that ver."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        assert c.auth_plain("wendy", USERS["wendy@example.test"]).tag == f"{{{SASL_NS}}}success"
        features = c.open()
        caps = features.find(f"{{{CAPS_NS}}}c")
        assert caps is not None, to_text(features)
        assert caps.get("hash") == "sha-1" and caps.get("node")
        c.bind("caps")
        node = f"{caps.get('node')}#{caps.get('ver')}"
        c.send(f"<iq type='get' id='caps1' to='example.test'><query xmlns='{DISCO_INFO}' node='{node}'/></iq>")
        reply = c.expect(f"{{{CLIENT}}}iq")
        assert reply.get("type") == "result", to_text(reply)
        query = reply.find(f"{{{DISCO_INFO}}}query")
        assert query.get("node") == node
        assert caps_ver(query) == caps.get("ver")


def test_version_time_ping_and_uptime(server):
    """XEP-0092 name and version (no OS by default), XEP-0202 time close to ours,
    XEP-0199 ping and XEP-0012 uptime, all from the server's domain."""
    async def scenario():
        import datetime
        async with logged_in(server, "wendy@example.test/misc", USERS["wendy@example.test"]) as wendy:
            plugins(wendy, "xep_0092", "xep_0202", "xep_0012")
            version = await wendy.xmpp.plugin["xep_0092"].get_version("example.test", timeout=10)
            assert version["software_version"]["name"] == "fedxmpp"
            assert re.fullmatch(r"\d+\.\d+\.\d+.*", version["software_version"]["version"])
            assert not version["software_version"]["os"]
            stamp = await wendy.xmpp.plugin["xep_0202"].get_entity_time("example.test", timeout=10)
            # Read by hand: slixmpp's parser appends a second 'Z' to the XEP's own format.
            text = stamp.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc").text
            assert text.endswith("Z") and stamp.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}tzo").text == "+00:00"
            utc = datetime.datetime.fromisoformat(text)
            assert abs((utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 60
            pong = await wendy.xmpp.plugin["xep_0199"].send_ping("example.test", timeout=10)
            assert pong["type"] == "result"
            last = await wendy.xmpp.plugin["xep_0012"].get_last_activity("example.test", timeout=10)
            assert int(last["last_activity"]["seconds"]) >= 0

    run(scenario())


def test_ping_without_to_and_to_own_bare_jid(server):
    """XEP-0199 keepalives as libstrophe (profanity) sends them, without 'to', and a ping
    to the user's own bare JID are handled by the server for the account (RFC 6120
    §10.3.3) and answered with a result; another user's bare JID is not the server's
    to answer (<service-unavailable/>)."""
    with RawClient(server.port, server.cert_path()) as c:
        jid = c.login("wendy", USERS["wendy@example.test"], "keepalive")
        c.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        c.send("<iq type='get' id='p2' to='wendy@example.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        c.send("<iq type='get' id='p3' to='victor@example.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        replies = {}
        while len(replies) < 3:
            el = c.next_element()
            if el.tag == f"{{{CLIENT}}}iq":
                replies[el.get("id")] = el
        for ident in ("p1", "p2"):
            assert replies[ident].get("type") == "result", to_text(replies[ident])
            assert replies[ident].get("from") in (None, "wendy@example.test"), to_text(replies[ident])
            assert replies[ident].get("to") == jid
        assert stanza_error(replies["p3"]) == "service-unavailable", to_text(replies["p3"])


def test_private_xml_storage(server):
    """XEP-0049: a user stores private XML and reads it back in another session;
    another user may not read it (<forbidden/>); a reserved namespace is refused."""
    from slixmpp.exceptions import IqError
    stored = "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><color>blue</color></prefs></query>"
    wanted = "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>"

    async def scenario():
        async with logged_in(server, "victor@example.test/one", USERS["victor@example.test"]) as victor:
            assert (await raw_iq(victor, "set", stored))["type"] == "result"
            with pytest.raises(IqError) as err:
                await raw_iq(victor, "set", "<query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query>")
            assert err.value.iq["error"]["condition"] == "not-acceptable"
        async with logged_in(server, "victor@example.test/two", USERS["victor@example.test"]) as victor:
            result = await raw_iq(victor, "get", wanted)
            color = result.xml.find("{jabber:iq:private}query/{urn:example:prefs}prefs/{urn:example:prefs}color")
            assert color is not None and color.text == "blue"
        async with logged_in(server, "wendy@example.test/snoop", USERS["wendy@example.test"]) as wendy:
            with pytest.raises(IqError) as err:
                await raw_iq(wendy, "get", wanted, to="victor@example.test")
            assert err.value.iq["error"]["condition"] == "forbidden"

    run(scenario())


def test_vcard_and_last_activity_survive_a_restart(own_server):
    """XEP-0054: a vCard set by one user is read by another after the server restarted;
    XEP-0012: the logout time stored at the end of the user's session is still
    known, with the status text of their unavailable presence."""
    users = {"vic@example.test": "vic-secret", "reader@example.test": "reader-secret"}
    srv = own_server(users=users)

    async def write():
        async with logged_in(srv, "vic@example.test/w", users["vic@example.test"]) as vic:
            plugins(vic, "xep_0054")
            card = vic.xmpp.plugin["xep_0054"].make_vcard()
            card["FN"] = "Victoria Card"
            card["NICKNAME"] = "vic"
            await vic.xmpp.plugin["xep_0054"].publish_vcard(card, timeout=10)
            vic.xmpp.send_presence()
            vic.xmpp.send_presence(ptype="unavailable", pstatus="gone fishing")
            await vic.barrier()

    async def read():
        from slixmpp.exceptions import IqError
        async with logged_in(srv, "reader@example.test/r", users["reader@example.test"]) as reader:
            plugins(reader, "xep_0054", "xep_0012")
            got = await reader.xmpp.plugin["xep_0054"].get_vcard("vic@example.test", local=False, timeout=10)
            assert (got["vcard_temp"]["FN"], got["vcard_temp"]["NICKNAME"]) == ("Victoria Card", ["vic"])
            with pytest.raises(IqError) as err:  # no presence subscription to vic
                await reader.xmpp.plugin["xep_0012"].get_last_activity("vic@example.test", timeout=10)
            assert err.value.iq["error"]["condition"] == "forbidden"
        async with logged_in(srv, "vic@example.test/again", users["vic@example.test"]) as vic:
            plugins(vic, "xep_0012")
            iq = vic.xmpp.make_iq_get(queryxmlns="jabber:iq:last", ito="vic@example.test")
            last = await iq.send(timeout=10)
            query = last.xml.find("{jabber:iq:last}query")
            assert query.text == "gone fishing" and int(query.get("seconds")) >= 0

    run(write())
    srv.stop()
    srv.start()
    run(read())
