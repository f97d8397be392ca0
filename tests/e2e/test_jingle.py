"""Jingle signalling (XEP-0166) between two local users passes through the server
untouched: session-initiate (an XEP-0234 file offer over an XEP-0260 SOCKS5
transport, and an RTP audio call with ICE-UDP), session-accept and
session-terminate arrive at the other client exactly as sent, and their results
come back.  So does the older XEP-0096 file-transfer offer (stream initiation)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from tests.e2e.harness import logged_in, run

USERS = {"romy@example.test": "romy-secret", "jules@example.test": "jules-secret"}
JINGLE = "urn:xmpp:jingle:1"

FILE_OFFER = f"""<jingle xmlns='{JINGLE}' action='session-initiate' initiator='romy@example.test/desk' sid='ft1'>
  <content creator='initiator' name='file' senders='initiator'>
    <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>
      <file><media-type>image/png</media-type><name>cat.png</name><size>123456</size>
        <hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>2AfMGH8O7UNPTvUVAM9aK13mpCY=</hash></file>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='s5b1' dstaddr='0123456789abcdef0123456789abcdef01234567'>
      <candidate cid='c1' host='127.0.0.1' jid='proxy.example.test' port='7777' priority='655360' type='proxy'/>
    </transport>
  </content>
</jingle>"""

CALL_OFFER = f"""<jingle xmlns='{JINGLE}' action='session-initiate' initiator='romy@example.test/desk' sid='call1'>
  <content creator='initiator' name='voice'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' pwd='asd88fgpdd777uzjYhagZg' ufrag='8hhy'>
      <candidate component='1' foundation='1' generation='0' id='el0747fg11' ip='127.0.0.1' network='1'
                 port='8998' priority='2130706431' protocol='udp' type='host'/>
    </transport>
  </content>
</jingle>"""


def canonical(el: ET.Element) -> str:
    return ET.canonicalize(ET.tostring(el, encoding="unicode"), strip_text=True)


SI_OFFER = """<si xmlns='http://jabber.org/protocol/si' id='si1' mime-type='text/plain'
    profile='http://jabber.org/protocol/si/profile/file-transfer'>
  <file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='notes.txt' size='1022'>
    <desc>meeting notes</desc></file>
  <feature xmlns='http://jabber.org/protocol/feature-neg'>
    <x xmlns='jabber:x:data' type='form'>
      <field var='stream-method' type='list-single'>
        <option><value>http://jabber.org/protocol/bytestreams</value></option>
        <option><value>http://jabber.org/protocol/ibb</value></option>
      </field>
    </x>
  </feature>
</si>"""


def test_jingle_session_between_local_users_arrives_untouched(own_server):
    server = own_server(users=USERS)

    async def scenario():
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        async with logged_in(server, "romy@example.test/desk", USERS["romy@example.test"]) as romy, \
                logged_in(server, "jules@example.test/phone", USERS["jules@example.test"]) as jules:
            inbox: dict[str, asyncio.Queue] = {"romy": asyncio.Queue(), "jules": asyncio.Queue()}
            for name, client in (("romy", romy), ("jules", jules)):
                def handle(iq, name=name):
                    inbox[name].put_nowait(iq)
                    iq.reply(clear=True).send()
                for what, xpath in (("jingle", f"{{{JINGLE}}}jingle"), ("si", "{http://jabber.org/protocol/si}si")):
                    client.xmpp.register_handler(Callback(f"{what}-{name}", MatchXPath(
                        f"{{jabber:client}}iq/{xpath}"), handle))

            async def exchange(sender, receiver_name: str, to: str, payload: str) -> None:
                iq = sender.xmpp.make_iq_set(ito=to)
                sent = ET.fromstring(payload)
                iq.xml.append(sent)
                result = await iq.send(timeout=10)
                assert result["type"] == "result" and result["from"].full == to
                got = await asyncio.wait_for(inbox[receiver_name].get(), 10)
                assert got["from"].full == sender.jid.full
                (received,) = list(got.xml)
                assert canonical(received) == canonical(sent)

            await exchange(romy, "jules", "jules@example.test/phone", FILE_OFFER)
            await exchange(romy, "jules", "jules@example.test/phone", CALL_OFFER)
            accept = CALL_OFFER.replace("session-initiate", "session-accept").replace(
                "initiator='romy@example.test/desk'", "initiator='romy@example.test/desk' "
                                                       "responder='jules@example.test/phone'")
            await exchange(jules, "romy", "romy@example.test/desk", accept)
            terminate = (f"<jingle xmlns='{JINGLE}' action='session-terminate' sid='call1'>"
                         "<reason><success/><text>bye</text></reason></jingle>")
            await exchange(romy, "jules", "jules@example.test/phone", terminate)
            await exchange(romy, "jules", "jules@example.test/phone", SI_OFFER)

    run(scenario())
