"""XEP-0280 message carbons with real clients: what one device receives and sends
shows up on the user's other device."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import USERS
from tests.e2e.harness import IO_TIMEOUT, logged_in, run

VIOLA, ORSINO = "viola@example.test", "orsino@example.test"
CARBONS = {"xep_0280": {}}


def test_carbons_reach_the_second_resource(server):
    """With carbons enabled on both of viola's devices: a message orsino sends to her
    phone reaches the laptop as a <received/> carbon (and the phone as itself); a
    message the phone sends reaches the laptop as a <sent/> carbon, and orsino as
    itself.  The phone gets no copy of what it sent or received directly."""
    async def scenario():
        async with logged_in(server, f"{VIOLA}/phone", USERS[VIOLA], plugins=CARBONS) as phone, \
                logged_in(server, f"{VIOLA}/laptop", USERS[VIOLA], plugins=CARBONS) as laptop, \
                logged_in(server, f"{ORSINO}/o", USERS[ORSINO]) as orsino:
            copies: dict[str, asyncio.Queue] = {}
            for name, client in (("phone", phone), ("laptop", laptop)):
                for kind in ("carbon_received", "carbon_sent"):
                    queue = copies[f"{name} {kind}"] = asyncio.Queue()
                    client.xmpp.add_event_handler(kind, queue.put_nowait)
                await asyncio.wait_for(client.xmpp.plugin["xep_0280"].enable(), IO_TIMEOUT)
            for client in (phone, laptop, orsino):
                await client.available()

            orsino.xmpp.send_message(mto=f"{VIOLA}/phone", mbody="If music be the food of love", mtype="chat")
            direct = await phone.next_message()
            assert direct["body"] == "If music be the food of love"
            carbon = await asyncio.wait_for(copies["laptop carbon_received"].get(), IO_TIMEOUT)
            inner = carbon["carbon_received"]
            assert carbon["from"].full == VIOLA
            assert (inner["body"], inner["from"].full, inner["to"].full) == (
                "If music be the food of love", f"{ORSINO}/o", f"{VIOLA}/phone")

            phone.xmpp.send_message(mto=ORSINO, mbody="play on", mtype="chat")
            assert (await orsino.next_message())["body"] == "play on"
            carbon = await asyncio.wait_for(copies["laptop carbon_sent"].get(), IO_TIMEOUT)
            inner = carbon["carbon_sent"]
            assert (inner["body"], inner["from"].full, inner["to"].bare) == ("play on", f"{VIOLA}/phone", ORSINO)

            for client in (phone, laptop, orsino):
                await client.barrier()
            assert copies["phone carbon_received"].empty() and copies["phone carbon_sent"].empty()

    run(scenario())
