"""Helpers for the RFC 6121 end-to-end tests: watching presence, reading the
server's copy of a roster, and the subscription handshake."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from tests.e2e.harness import IO_TIMEOUT, Client, HarnessError

ROSTER = "jabber:iq:roster"
DELAY = "urn:xmpp:delay"


class Presences:
    """Every presence stanza a slixmpp client receives, in order."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.queue: asyncio.Queue = asyncio.Queue()
        client.xmpp.add_event_handler("presence", self.queue.put_nowait)

    async def expect(self, frm: str, ptype: str = "available", timeout: float = IO_TIMEOUT) -> Any:
        """The next presence from *frm* (full or bare, as sent) of *ptype*; others are skipped."""
        skipped: list[str] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                p = await asyncio.wait_for(self.queue.get(), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise HarnessError(f"{self.client.jid}: no {ptype} presence from {frm} within {timeout}s; "
                                   f"got {skipped}") from None
            if p["from"].full == frm and p["type"] == ptype:
                return p
            skipped.append(f"{p['from'].full}:{p['type']}")

    def drain(self) -> list[tuple[str, str]]:
        """(from, type) of what arrived and was not consumed yet."""
        out = []
        while not self.queue.empty():
            p = self.queue.get_nowait()
            out.append((p["from"].full, p["type"]))
        return out


def manual_subscriptions(*clients: Client) -> None:
    """No automatic answers from slixmpp: each test decides every step."""
    for c in clients:
        c.xmpp.auto_authorize = None
        c.xmpp.auto_subscribe = False


async def server_roster(client: Client) -> dict[str, tuple[str, str | None]]:
    """The roster as the server has it (a roster get without a version):
    {jid: (subscription, ask)}."""
    iq = client.xmpp.make_iq_get(queryxmlns=ROSTER)
    result = await iq.send(timeout=IO_TIMEOUT)
    query = result.xml.find(f"{{{ROSTER}}}query")
    assert query is not None, f"no roster in {ET.tostring(result.xml)!r}"
    return {i.get("jid"): (i.get("subscription"), i.get("ask")) for i in query.findall(f"{{{ROSTER}}}item")}


async def befriend(a: Client, pa: Presences, b: Client, pb: Presences) -> None:
    """The four-step handshake of RFC 6121 §3 between two available clients,
    ending with a subscription 'both' ways."""
    ja, jb = a.jid.bare, b.jid.bare
    a.xmpp.send_presence(pto=jb, ptype="subscribe")
    await pb.expect(ja, "subscribe")
    b.xmpp.send_presence(pto=ja, ptype="subscribed")
    await pa.expect(jb, "subscribed")
    b.xmpp.send_presence(pto=ja, ptype="subscribe")
    await pa.expect(jb, "subscribe")
    a.xmpp.send_presence(pto=jb, ptype="subscribed")
    await pb.expect(ja, "subscribed")


def delay_of(message: Any) -> ET.Element | None:
    return message.xml.find(f"{{{DELAY}}}delay")


async def iq_error(client: Client, to: str, timeout: float = IO_TIMEOUT) -> Any:
    """An iq get of a namespace nobody serves, sent to *to*: the error that came
    back (an AssertionError if a result came back instead)."""
    from slixmpp.exceptions import IqError

    iq = client.xmpp.make_iq_get(queryxmlns="urn:example:interop:nothing", ito=to)
    try:
        result = await iq.send(timeout=timeout)
    except IqError as e:
        return e.iq
    raise AssertionError(f"{to} answered an unknown query with {result}")
