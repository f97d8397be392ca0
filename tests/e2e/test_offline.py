"""Offline messages (XEP-0160, XEP-0203) and a restart that loses nothing, with real clients."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from tests.e2e.conftest import USERS
from tests.e2e.harness import logged_in, login, run, wait_for
from tests.e2e.im import Presences, befriend, delay_of, manual_subscriptions, server_roster

NURSE, TYBALT = "nurse@example.test", "tybalt@example.test"


def test_message_to_offline_user_is_delivered_at_next_login(server):
    """Messages to a user who is offline are accepted without error and delivered,
    in order and with a delay stamp from the server, when the user next comes
    online — once: the login after that gets nothing."""
    async def scenario():
        before = datetime.now(timezone.utc).replace(microsecond=0)
        async with logged_in(server, f"{NURSE}/n", USERS[NURSE]) as nurse:
            nurse.xmpp.send_message(mto=TYBALT, mbody="first", mtype="chat")
            nurse.xmpp.send_message(mto=f"{TYBALT}/gone", mbody="second")
            await nurse.barrier()
            assert nurse.messages.empty(), "the sender got something back"
        async with logged_in(server, f"{TYBALT}/t", USERS[TYBALT]) as tybalt:
            assert tybalt.messages.empty()  # nothing before initial presence
            await tybalt.available()
            first, second = await tybalt.next_message(), await tybalt.next_message()
            assert (first["body"], second["body"]) == ("first", "second")
            assert first["from"].full == f"{NURSE}/n"
            delay = delay_of(first)
            assert delay is not None and delay.get("from") == "example.test"
            stamp = datetime.strptime(delay.get("stamp"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            assert before <= stamp <= datetime.now(timezone.utc)
        async with logged_in(server, f"{TYBALT}/t", USERS[TYBALT]) as tybalt:
            await tybalt.available()
            await tybalt.barrier()
            assert tybalt.messages.empty()

    run(scenario())


def test_full_offline_store_is_an_error(own_server):
    """With [im] offline_quota = 2, the third message to an offline user comes back
    as <service-unavailable/>; the two stored ones are delivered."""
    users = {"a@example.test": "a-secret", "b@example.test": "b-secret"}
    srv = own_server({"im": {"offline_quota": 2}}, users=users)

    async def scenario():
        async with logged_in(srv, "a@example.test/x", users["a@example.test"]) as a:
            for n in range(3):
                a.xmpp.send_message(mto="b@example.test", mbody=f"m{n}", mtype="chat")
            err = await a.next_message()
            assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable"
            assert err["body"] == "m2"
        async with logged_in(srv, "b@example.test/y", users["b@example.test"]) as b:
            await b.available()
            assert [(await b.next_message())["body"] for _ in range(2)] == ["m0", "m1"]

    run(scenario())


def test_restart_loses_no_roster_subscription_or_offline_message(own_server):
    """After a restart of the server: the subscription 'both' between a and b, a's
    pending request to c and its roster item, and a message stored for b are all
    still there — b gets the message and a's presence, c gets the request."""
    users = {f"{u}@example.test": f"{u}-secret" for u in ("a", "b", "c")}
    srv = own_server(users=users)

    def creds(u: str, res: str) -> tuple[str, str]:
        return f"{u}@example.test/{res}", users[f"{u}@example.test"]

    async def before_restart():
        async with logged_in(srv, *creds("a", "1")) as a, logged_in(srv, *creds("b", "1")) as b:
            manual_subscriptions(a, b)
            pa, pb = Presences(a), Presences(b)
            await a.available()
            await b.available()
            await befriend(a, pa, b, pb)
            a.xmpp.send_presence(pto="c@example.test", ptype="subscribe")
            await b.close()
            await pa.expect("b@example.test/1", "unavailable")
            a.xmpp.send_message(mto="b@example.test", mbody="kept across the restart", mtype="chat")
            await a.barrier()
            assert a.messages.empty()

    async def after_restart():
        async with logged_in(srv, *creds("a", "2")) as a:
            assert await server_roster(a) == {"b@example.test": ("both", None),
                                              "c@example.test": ("none", "subscribe")}
            await a.available()
            async with logged_in(srv, *creds("b", "2")) as b:
                pb = Presences(b)
                await b.available()
                assert (await b.next_message())["body"] == "kept across the restart"
                await pb.expect("a@example.test/2", "available")
            c = await login(srv, *creds("c", "2"))
            try:
                manual_subscriptions(c)
                pc = Presences(c)
                await c.available()
                await pc.expect("a@example.test", "subscribe")
            finally:
                await c.close()

    def committed() -> bool:
        """c's side of the request and b's message are in the database: what is
        still on its way to storage when SIGTERM comes is not what this tests."""
        db = sqlite3.connect(f"file:{srv.data_dir / 'fedxmpp.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            pending = db.execute("SELECT pending_in FROM roster_items WHERE username = 'c' "
                                 "AND contact = 'a@example.test'").fetchone()
            stored = db.execute("SELECT COUNT(*) FROM offline_messages WHERE username = 'b'").fetchone()[0]
        finally:
            db.close()
        return bool(pending and pending[0]) and stored == 1

    run(before_restart())
    wait_for(committed, 10, what="the request to c and the message to b to be committed")
    srv.terminate()
    srv.start()
    run(after_restart())
