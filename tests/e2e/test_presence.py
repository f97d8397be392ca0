"""Presence (RFC 6121 §4) and bare-JID routing by priority (§8.5.2) with real clients."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import USERS
from tests.e2e.harness import IO_TIMEOUT, kill, logged_in, login, run
from tests.e2e.im import Presences, befriend, delay_of, manual_subscriptions, server_roster

MERCUTIO, BENVOLIO = "mercutio@example.test", "benvolio@example.test"
PARIS, ROSALINE = "paris@example.test", "rosaline@example.test"


def test_presence_after_login_and_after_a_killed_connection(server):
    """Between subscribed users: benvolio's login is seen by mercutio and mercutio's
    presence reaches benvolio (probe); when benvolio's connection dies with a TCP
    reset and no closing stream, mercutio is told he is unavailable."""
    async def scenario():
        async with logged_in(server, f"{MERCUTIO}/m", USERS[MERCUTIO]) as m:
            pm = Presences(m)
            b = await login(server, f"{BENVOLIO}/first", USERS[BENVOLIO])
            try:
                manual_subscriptions(m, b)
                pb = Presences(b)
                await m.available()
                await b.available()
                await befriend(m, pm, b, pb)
            finally:
                await b.close()
            await pm.expect(f"{BENVOLIO}/first", "unavailable")

            b = await login(server, f"{BENVOLIO}/second", USERS[BENVOLIO])
            pb = Presences(b)
            b.xmpp.send_presence(pstatus="back")
            seen = await pm.expect(f"{BENVOLIO}/second", "available")
            assert seen["status"] == "back"
            await pb.expect(f"{MERCUTIO}/m", "available")

            kill(b)
            await pm.expect(f"{BENVOLIO}/second", "unavailable")

    run(scenario())


def test_bare_jid_messages_follow_priority(server):
    """Messages to paris's bare JID go to his highest non-negative priority resource
    only; when that one drops below zero the other gets them; when all are negative
    they are stored and delivered, delayed, once one comes back to priority 0."""
    async def scenario():
        async with logged_in(server, f"{PARIS}/desk", USERS[PARIS]) as desk, \
                logged_in(server, f"{PARIS}/phone", USERS[PARIS]) as phone, \
                logged_in(server, f"{ROSALINE}/r", USERS[ROSALINE]) as rosaline:
            await desk.available(priority=5)
            await phone.available(priority=1)
            for mtype in ("normal", "chat"):
                rosaline.xmpp.send_message(mto=PARIS, mbody=f"{mtype} to desk", mtype=mtype)
                assert (await desk.next_message())["body"] == f"{mtype} to desk"
            await desk.available(priority=-1)
            rosaline.xmpp.send_message(mto=PARIS, mbody="to phone", mtype="chat")
            assert (await phone.next_message())["body"] == "to phone"
            await phone.available(priority=-2)
            rosaline.xmpp.send_message(mto=PARIS, mbody="nobody eligible", mtype="chat")
            await rosaline.barrier()  # routed: stored, not delivered
            await phone.barrier()
            await desk.barrier()
            assert phone.messages.empty() and desk.messages.empty() and rosaline.messages.empty()
            await phone.available(priority=0)
            stored = await phone.next_message()
            assert stored["body"] == "nobody eligible"
            assert delay_of(stored) is not None
            await desk.barrier()
            assert desk.messages.empty()

    run(scenario())


SAMPSON, GREGORY = "sampson@example.test", "gregory@example.test"


def test_unsubscribe_takes_the_contacts_presence_away(server):
    """RFC 6121 §3.3.3: sampson and gregory are subscribed both ways and both online
    (gregory with two resources); sampson unsubscribes from gregory's presence and gets
    unavailable from each of gregory's resources, while gregory is told and keeps
    seeing sampson (his own subscription is untouched)."""
    async def scenario():
        async with logged_in(server, f"{SAMPSON}/s", USERS[SAMPSON]) as s, \
                logged_in(server, f"{GREGORY}/g1", USERS[GREGORY]) as g1:
            manual_subscriptions(s, g1)
            ps, pg1 = Presences(s), Presences(g1)
            await s.available()
            await g1.available()
            await befriend(s, ps, g1, pg1)
            async with logged_in(server, f"{GREGORY}/g2", USERS[GREGORY]) as g2:
                await g2.available()
                await ps.expect(f"{GREGORY}/g2", "available")
                s.xmpp.send_presence(pto=GREGORY, ptype="unsubscribe")
                await pg1.expect(SAMPSON, "unsubscribe")
                gone = set()
                while len(gone) < 2:  # in whichever order the server sends them
                    p = await asyncio.wait_for(ps.queue.get(), IO_TIMEOUT)
                    if p["type"] == "unavailable" and p["from"].bare == GREGORY:
                        gone.add(p["from"].full)
                assert gone == {f"{GREGORY}/g1", f"{GREGORY}/g2"}
                assert (await server_roster(s))[GREGORY] == ("from", None)
                assert (await server_roster(g1))[SAMPSON] == ("to", None)

    run(scenario())
