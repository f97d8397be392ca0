"""XEP-0313 message archives with real clients: paging through 100 messages with
XEP-0059 result set management, forward and backward."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.e2e.conftest import USERS
from tests.e2e.harness import IO_TIMEOUT, Client, logged_in, run

OLIVIA, SEBASTIAN = "olivia@example.test", "sebastian@example.test"
MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"
SID = "urn:xmpp:sid:0"
_ids = itertools.count()


def collect_results(client: Client) -> list[ET.Element]:
    """Archive results as they arrive (slixmpp's 'message' event wants a body)."""
    got: list[ET.Element] = []
    client.xmpp.register_handler(Callback("archive results", MatchXPath(f"{{{CLIENT}}}message/{{{MAM}}}result"),
                                          lambda message: got.append(message.xml.find(f"{{{MAM}}}result"))))
    return got


async def page(client: Client, got: list[ET.Element], rsm: str) -> tuple[list[tuple[str, str]], ET.Element]:
    """One archive query of olivia's conversation with sebastian: the (archive id,
    body) of each result, in the order received, and the <fin/>."""
    queryid = f"q{next(_ids)}"
    iq = client.xmpp.make_iq_set()
    iq.xml.append(ET.fromstring(
        f"<query xmlns='{MAM}' queryid='{queryid}'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
        f"<field var='with'><value>{SEBASTIAN}</value></field></x>"
        f"<set xmlns='{RSM}'>{rsm}</set></query>"))
    answer = await iq.send(timeout=IO_TIMEOUT)
    fin = answer.xml.find(f"{{{MAM}}}fin")
    assert fin is not None, ET.tostring(answer.xml)
    results = [(r.get("id"), r.findtext(f"{{{FORWARD}}}forwarded/{{{CLIENT}}}message/{{{CLIENT}}}body"))
               for r in got if r.get("queryid") == queryid]
    got.clear()
    return results, fin


def test_paging_through_a_hundred_messages(server):
    """Sebastian sends olivia 100 messages; olivia pages through her archive 20 at a
    time forward (<after/>) and backward from the last page (empty <before/>, then
    <before/> the first id): each way she gets all 100, in order, each page with
    first/last/count, 'complete' on the last page only — and each id is the
    stanza-id the live message carried."""
    async def scenario():
        async with logged_in(server, f"{OLIVIA}/o", USERS[OLIVIA]) as olivia, \
                logged_in(server, f"{SEBASTIAN}/s", USERS[SEBASTIAN]) as sebastian:
            got = collect_results(olivia)
            await olivia.available()
            for n in range(100):
                sebastian.xmpp.send_message(mto=OLIVIA, mbody=f"m{n:03d}", mtype="chat")
            live = [await olivia.next_message() for _ in range(100)]
            assert [m["body"] for m in live] == [f"m{n:03d}" for n in range(100)]
            stanza_ids = [m.xml.find(f"{{{SID}}}stanza-id") for m in live]
            assert all(s is not None and s.get("by") == OLIVIA for s in stanza_ids)

            forward, after, pages = [], None, 0
            while True:
                results, fin = await page(olivia, got, "<max>20</max>" + (f"<after>{after}</after>" if after else ""))
                pages += 1
                assert len(results) == 20
                forward += results
                assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first") == results[0][0]
                assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}count") == "100"
                after = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
                assert after == results[-1][0]
                if fin.get("complete") == "true":
                    break
                assert pages < 6, "the archive did not say it was complete"
            assert pages == 5
            assert [body for _, body in forward] == [f"m{n:03d}" for n in range(100)]
            assert [archive_id for archive_id, _ in forward] == [s.get("id") for s in stanza_ids]

            backward, before, pages = [], "", 0
            while True:
                results, fin = await page(olivia, got, f"<max>20</max><before>{before}</before>")
                pages += 1
                backward = results + backward
                if fin.get("complete") == "true":
                    break
                before = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first")
                assert pages < 6
            assert pages == 5 and backward == forward
            first = fin.find(f"{{{RSM}}}set/{{{RSM}}}first")
            assert first is not None and first.get("index") == "0"

    run(scenario(), timeout=90)


VALENTINE, CURIO = "valentine@example.test", "curio@example.test"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


def test_archive_discovery_and_query_as_clients_do_it(server):
    """XEP-0313 §6: the archive is at the user's bare JID, and that is where its
    features are listed — disco#info to the own bare JID, or without 'to' (the same
    account, RFC 6120 §10.3.3): mam:2, mam:2#extended and XEP-0359 stanza ids.  The
    domain hosts no archive and lists none (as Prosody).  Then slixmpp's own XEP-0313
    plugin finds the messages, and so does a query shaped like profanity's (no 'to',
    'start' with microseconds and a numeric offset, an empty RSM <before/>)."""
    async def scenario():
        from datetime import datetime, timedelta, timezone

        from slixmpp import JID
        async with logged_in(server, f"{VALENTINE}/v", USERS[VALENTINE]) as valentine, \
                logged_in(server, f"{CURIO}/c", USERS[CURIO]) as curio:
            for name in ("xep_0030", "xep_0059", "xep_0313"):
                valentine.xmpp.register_plugin(name)
            disco = valentine.xmpp.plugin["xep_0030"]
            wanted = {MAM, f"{MAM}#extended", SID}
            own = await disco.get_info(jid=VALENTINE, timeout=IO_TIMEOUT)
            assert wanted <= set(own["disco_info"]["features"])
            iq = valentine.xmpp.make_iq_get(queryxmlns=DISCO_INFO)
            no_to = await iq.send(timeout=IO_TIMEOUT)
            assert no_to["from"].full in ("", VALENTINE), no_to
            listed = {f.get("var") for f in no_to.xml.iter(f"{{{DISCO_INFO}}}feature")}
            assert wanted <= listed
            domain = await disco.get_info(jid="example.test", timeout=IO_TIMEOUT)
            assert MAM not in domain["disco_info"]["features"]

            since = datetime.now(timezone.utc) - timedelta(minutes=5)
            await valentine.available()
            for n in range(3):
                curio.xmpp.send_message(mto=VALENTINE, mbody=f"history {n}", mtype="chat")
            assert [(await valentine.next_message())["body"] for _ in range(3)] == [f"history {n}" for n in range(3)]

            answer = await valentine.xmpp.plugin["xep_0313"].retrieve(with_jid=JID(CURIO), rsm={"max": 10},
                                                                      timeout=IO_TIMEOUT)
            assert answer["type"] == "result"
            bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in answer["mam"]["results"]]
            assert bodies == [f"history {n}" for n in range(3)]

            got = collect_results(valentine)
            iq = valentine.xmpp.make_iq_set()
            iq.xml.append(ET.fromstring(
                f"<query xmlns='{MAM}'><x xmlns='jabber:x:data' type='submit'>"
                f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
                f"<field var='with'><value>{CURIO}</value></field>"
                f"<field var='start'><value>{since.strftime('%Y-%m-%dT%H:%M:%S.%f+00:00')}</value></field>"
                f"</x><set xmlns='{RSM}'><max>10</max><before></before></set></query>"))
            answer = await iq.send(timeout=IO_TIMEOUT)
            fin = answer.xml.find(f"{{{MAM}}}fin")
            assert fin is not None and fin.get("complete") == "true", ET.tostring(answer.xml)
            assert [r.findtext(f"{{{FORWARD}}}forwarded/{{{CLIENT}}}message/{{{CLIENT}}}body") for r in got] \
                == [f"history {n}" for n in range(3)]

    run(scenario())
