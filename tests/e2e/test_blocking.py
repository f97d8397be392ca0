"""XEP-0191 blocking against the real server, both ways, with slixmpp."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import USERS
from tests.e2e.harness import logged_in, run

BELLA, PEST = "bella@example.test", "pest@example.test"


def test_blocking_both_ways_with_pushes(server):
    """bella blocks pest: her other resource (which asked for the list) gets a push;
    pest's message never reaches her and comes back <service-unavailable/>, his iq too;
    her message to him is refused with <not-acceptable/> and <blocked/> and never
    reaches him.  After the unblock, messages flow both ways again."""
    async def scenario():
        from slixmpp.exceptions import IqError
        async with logged_in(server, f"{BELLA}/desk", USERS[BELLA]) as bella, \
                logged_in(server, f"{BELLA}/phone", USERS[BELLA]) as phone, \
                logged_in(server, f"{PEST}/p", USERS[PEST]) as pest:
            for c in (bella, phone):
                c.xmpp.register_plugin("xep_0191")
            pushes: asyncio.Queue = asyncio.Queue()
            phone.xmpp.add_event_handler("blocked", pushes.put_nowait)
            assert await phone.xmpp.plugin["xep_0191"].get_blocked_jids(timeout=10) == set()
            await bella.xmpp.plugin["xep_0191"].block(PEST, timeout=10)
            push = await asyncio.wait_for(pushes.get(), 10)
            assert [str(i["jid"]) for i in push["block"]] == [PEST]
            assert {str(j) for j in await bella.xmpp.plugin["xep_0191"].get_blocked_jids(timeout=10)} == {PEST}

            # Inbound: from the blocked contact to the user.
            pest.xmpp.send_message(mto=f"{BELLA}/desk", mbody="let me in", mtype="chat")
            bounced = await pest.next_message()
            assert (bounced["type"], bounced["error"]["condition"]) == ("error", "service-unavailable")
            with pytest.raises(IqError) as err:
                await pest.xmpp.plugin["xep_0199"].send_ping(f"{BELLA}/desk", timeout=10)
            assert err.value.iq["error"]["condition"] == "service-unavailable"
            await bella.barrier()
            assert bella.messages.empty()

            # Outbound: from the user to the blocked contact.
            bella.xmpp.send_message(mto=f"{PEST}/p", mbody="go away", mtype="chat")
            refused = await bella.next_message()
            assert (refused["type"], refused["error"]["condition"]) == ("error", "not-acceptable")
            assert refused.xml.find("{jabber:client}error/{urn:xmpp:blocking:errors}blocked") is not None
            await pest.barrier()
            assert pest.messages.empty()

            await bella.xmpp.plugin["xep_0191"].unblock(PEST, timeout=10)
            pest.xmpp.send_message(mto=f"{BELLA}/desk", mbody="truce?", mtype="chat")
            assert (await bella.next_message())["body"] == "truce?"
            bella.xmpp.send_message(mto=f"{PEST}/p", mbody="truce", mtype="chat")
            assert (await pest.next_message())["body"] == "truce"

    run(scenario())


def test_blocklist_persists_and_applies_to_offline_user(server):
    """The list is stored: a blocked full JID's message to the user while she is
    offline is refused (not kept for her as an offline message), and her next
    session reads the same list."""
    async def scenario():
        async with logged_in(server, f"{BELLA}/a", USERS[BELLA]) as bella:
            bella.xmpp.register_plugin("xep_0191")
            await bella.xmpp.plugin["xep_0191"].block(f"{PEST}/evil", timeout=10)
        async with logged_in(server, f"{PEST}/evil", USERS[PEST]) as pest:
            pest.xmpp.send_message(mto=BELLA, mbody="while you were out", mtype="chat")
            bounced = await pest.next_message()
            assert bounced["error"]["condition"] == "service-unavailable"
        async with logged_in(server, f"{BELLA}/b", USERS[BELLA]) as bella:
            bella.xmpp.register_plugin("xep_0191")
            assert {str(j) for j in await bella.xmpp.plugin["xep_0191"].get_blocked_jids(timeout=10)} \
                == {f"{PEST}/evil"}
            await bella.xmpp.plugin["xep_0191"].unblock(f"{PEST}/evil", timeout=10)

    run(scenario())
