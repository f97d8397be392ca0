"""Stream management (XEP-0198) and client state indication (XEP-0352) with real
clients: slixmpp's xep_0198 plugin resuming after its socket is killed, and a raw
client for what slixmpp does not send."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.conftest import USERS
from tests.e2e.harness import (
    IO_TIMEOUT,
    Client,
    RawClient,
    ServerProcess,
    kill,
    logged_in,
    login,
    run,
    to_text,
)
from tests.e2e.im import Presences, befriend, delay_of, manual_subscriptions

SM = "urn:xmpp:sm:3"
CSI = "urn:xmpp:csi:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
LORENZO, BALTHASAR = "lorenzo@example.test", "balthasar@example.test"
ABRAM, POTPAN = "abram@example.test", "potpan@example.test"
ESCALUS = "escalus@example.test"


async def sm_login(server: ServerProcess, jid: str, password: str) -> Client:
    """A slixmpp client with stream management enabled (resumable)."""
    client = await login(server, jid, password, plugins={"xep_0198": {}})
    sm = client.xmpp.plugin["xep_0198"]
    if not sm.enabled_in:  # <enable/> follows the session start
        enabled = asyncio.Event()
        client.xmpp.add_event_handler("sm_enabled", lambda _e: enabled.set())
        await asyncio.wait_for(enabled.wait(), IO_TIMEOUT)
    assert sm.sm_id, "the server gave no resume id"
    return client


async def reconnect_and_resume(server: ServerProcess, client: Client) -> None:
    """After :func:`kill`: connect again; slixmpp resumes with its stored id."""
    await asyncio.wait_for(client.disconnected.wait(), IO_TIMEOUT)
    client.disconnected.clear()
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()
    client.xmpp.add_event_handler("session_resumed", lambda _e: outcome.done() or outcome.set_result(None))
    client.xmpp.add_event_handler("sm_failed", lambda f: outcome.done() or outcome.set_result(f))
    client.xmpp.connect("127.0.0.1", server.port)
    failure = await asyncio.wait_for(outcome, IO_TIMEOUT)
    assert failure is None, f"resumption failed: {failure}"


async def bodies(client: Client, n: int) -> list[str]:
    return [(await client.next_message())["body"] for _ in range(n)]


def test_resumption_after_a_killed_connection_loses_nothing(server):
    """A phone with stream management whose connection dies (TCP reset) while
    messages are in flight both ways reconnects and resumes: it keeps its full JID,
    gets exactly the messages it had not received, in order, none twice; what it
    sent just before dying reaches its contact exactly once; and the contact never
    saw it go unavailable."""
    async def scenario():
        async with logged_in(server, f"{BALTHASAR}/b", USERS[BALTHASAR]) as friend:
            phone = await sm_login(server, f"{LORENZO}/phone", USERS[LORENZO])
            try:
                manual_subscriptions(friend, phone)
                pf, pp = Presences(friend), Presences(phone)
                await friend.available()
                await phone.available()
                await befriend(friend, pf, phone, pp)
                for n in (1, 2):
                    friend.xmpp.send_message(mto=LORENZO, mbody=f"m{n}", mtype="chat")
                assert await bodies(phone, 2) == ["m1", "m2"]

                phone.xmpp.send_message(mto=BALTHASAR, mbody="from the phone", mtype="chat")
                kill(phone)
                for n in (3, 4, 5):
                    friend.xmpp.send_message(mto=f"{LORENZO}/phone", mbody=f"m{n}", mtype="chat")
                await friend.barrier()
                await reconnect_and_resume(server, phone)

                assert phone.jid.full == f"{LORENZO}/phone"
                assert await bodies(phone, 3) == ["m3", "m4", "m5"]
                friend.xmpp.send_message(mto=LORENZO, mbody="m6", mtype="chat")
                assert await bodies(phone, 1) == ["m6"]  # nothing in between: no duplicates
                await friend.barrier()
                got = []
                while not friend.messages.empty():
                    got.append(friend.messages.get_nowait()["body"])
                assert got == ["from the phone"]
                assert (f"{LORENZO}/phone", "unavailable") not in pf.drain()
            finally:
                await phone.close()
            await pf.expect(f"{LORENZO}/phone", "unavailable")  # a clean close ends it at once

    run(scenario())


def test_session_never_resumed_goes_to_offline_storage(own_server):
    """With [c2s] sm_resume_timeout = 3, a killed session that does not come back
    ends after the timeout: only then does its contact see it go unavailable, and
    the messages sent to it meanwhile are delivered, in order and with a delay
    stamp, at the user's next login."""
    users = {"a@example.test": "a-secret", "b@example.test": "b-secret"}
    srv = own_server({"c2s": {"sm_resume_timeout": 3}}, users=users)

    async def scenario():
        async with logged_in(srv, "b@example.test/desk", users["b@example.test"]) as b:
            a = await sm_login(srv, "a@example.test/phone", users["a@example.test"])
            try:
                manual_subscriptions(a, b)
                pa, pb = Presences(a), Presences(b)
                await a.available()
                await b.available()
                await befriend(a, pa, b, pb)
                kill(a)
                for n in (1, 2):
                    b.xmpp.send_message(mto="a@example.test/phone", mbody=f"late {n}", mtype="chat")
                await b.barrier()
                assert ("a@example.test/phone", "unavailable") not in pb.drain()
                await pb.expect("a@example.test/phone", "unavailable")
            finally:
                await a.close()
            assert b.messages.empty(), "the sender got an error back"
        async with logged_in(srv, "a@example.test/laptop", users["a@example.test"]) as again:
            await again.available()
            first, second = await again.next_message(), await again.next_message()
            assert (first["body"], second["body"]) == ("late 1", "late 2")
            assert delay_of(first) is not None and delay_of(second) is not None

    run(scenario())
    srv.wait_log(r"a@example.test/phone was not resumed in time")


def test_unknown_resume_id_is_item_not_found_and_binding_follows(server):
    """After SASL the features offer <sm/> and <csi/>; <resume/> with an id the server
    never gave gets <failed><item-not-found/></failed>, and the client can still bind
    on the same stream."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        c.starttls()
        outcome = c.auth_plain("escalus", USERS[ESCALUS])
        assert outcome.tag.endswith("}success"), to_text(outcome)
        features = c.open()
        assert features.find(f"{{{SM}}}sm") is not None and features.find(f"{{{CSI}}}csi") is not None
        c.send(f"<resume xmlns='{SM}' previd='no-such-session' h='0'/>")
        failed = c.expect(f"{{{SM}}}failed")
        assert failed.find(f"{{{STANZAS}}}item-not-found") is not None, to_text(failed)
        assert c.bind("after-failed") == f"{ESCALUS}/after-failed"


def test_inactive_client_gets_presence_later_but_messages_at_once(server):
    """While abram's client is inactive, potpan's presence updates are held and
    coalesced: a message from potpan arrives at once, preceded only by the latest of
    three updates.  <active/> releases the latest held update; after it, updates
    arrive as they come."""
    async def scenario():
        async with logged_in(server, f"{ABRAM}/a", USERS[ABRAM]) as a, \
                logged_in(server, f"{POTPAN}/p", USERS[POTPAN]) as p:
            manual_subscriptions(a, p)
            pa, pp = Presences(a), Presences(p)
            await a.available()
            await p.available()
            await befriend(a, pa, p, pp)
            seen: list[tuple[str, Any]] = []
            a.xmpp.add_event_handler(
                "presence", lambda st: st["from"].bare == POTPAN and seen.append(("presence", st["status"])))
            a.xmpp.add_event_handler("message", lambda st: seen.append(("message", st["body"])))
            a.xmpp.send_raw(f"<inactive xmlns='{CSI}'/>")
            await a.barrier()
            seen.clear()
            pp.drain()

            async def statuses(*texts: str) -> None:
                for text in texts:
                    p.xmpp.send_presence(pstatus=text)
                for text in texts:  # potpan's own copy comes after abram's (held) one
                    got = await pp.expect(f"{POTPAN}/p")
                    assert got["status"] == text

            await statuses("s1", "s2", "s3")
            p.xmpp.send_message(mto=ABRAM, mbody="wake up", mtype="chat")
            assert (await a.next_message())["body"] == "wake up"
            assert seen == [("presence", "s3"), ("message", "wake up")]

            await statuses("s4", "s5")
            a.xmpp.send_raw(f"<active xmlns='{CSI}'/>")
            await a.barrier()
            assert seen[2:] == [("presence", "s5")]

            pa.drain()
            p.xmpp.send_presence(pstatus="s6")
            assert (await pa.expect(f"{POTPAN}/p"))["status"] == "s6"
            assert seen[3:] == [("presence", "s6")]

    run(scenario())
