"""Clean ends without duplicates (XEP-0198): the server's last <a h/> before it
closes an SM stream (SIGTERM included), and a client that closes its own stream
not getting again, at its next login, the messages it was shown — while a
dropped connection still gets back what it did not acknowledge."""

from __future__ import annotations

import socket
import struct
from tests.e2e.harness import RawClient, ServerProcess, logged_in, login, run, stream_error, to_text
from tests.e2e.test_sm_csi import sm_login

SM = "urn:xmpp:sm:3"
CLIENT = "jabber:client"
DOMAIN = "example.test"
USERS = {f"{name}@{DOMAIN}": f"{name}-secret" for name in ("ann", "ben", "cat", "dan")}
ANN, BEN, CAT, DAN = sorted(USERS)
# No <r/> from the server before the client closes: its messages stay unacknowledged.
CONFIG = {"c2s": {"sm_ack_request_every": 50}}


def raw_login(server: ServerProcess, jid: str, resource: str, *, sm: str | None = None) -> RawClient:
    """A raw client, logged in and bound; with *sm* ('true'/'false') SM is enabled
    with that resume attribute."""
    client = RawClient(server.port, server.cert_path())
    client.login(jid.split("@")[0], USERS[jid], resource)
    if sm is not None:
        client.send(f"<enable xmlns='{SM}' resume='{sm}'/>")
        client.expect(f"{{{SM}}}enabled")
    return client


def send_chats(client: RawClient, to: str, bodies: list[str]) -> None:
    client.send("".join(f"<message to='{to}' type='chat' id='{b}'><body>{b}</body></message>" for b in bodies))


def read_bodies_until(client: RawClient, marker: str) -> list[str]:
    """The message bodies *client* receives, up to and including *marker* (bounded)."""
    bodies: list[str] = []
    while marker not in bodies:
        el = client.next_element()
        if el.tag == f"{{{CLIENT}}}message":
            body = el.findtext(f"{{{CLIENT}}}body")
            if body is not None:
                bodies.append(body)
    return bodies


def reset(client: RawClient) -> None:
    """The connection breaks: a TCP reset, no closing tag."""
    client.t.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def relogin_sees(server: ServerProcess, sender: RawClient, marker: str) -> list[str]:
    """Log ANN in again (no SM), become available, let *sender* send *marker* to
    her bare JID (held until stored messages are out): every body seen up to it."""
    again = raw_login(server, ANN, "again")
    try:
        again.send("<presence/>")
        again.ping_server("avail")
        send_chats(sender, ANN, [marker])
        return read_bodies_until(again, marker)
    finally:
        again.close()


def test_clean_close_without_ack_does_not_deliver_archived_messages_twice(own_server):
    """A raw SM client reads three messages, acknowledges none and closes its stream
    with </stream:stream>: the server's answer starts with <a h/>, and at the next
    login the three are not delivered again (the archive holds them)."""
    server = own_server(CONFIG, users=USERS)
    with raw_login(server, BEN, "b") as ben, raw_login(server, ANN, "phone", sm="true") as ann:
        send_chats(ben, f"{ANN}/phone", ["one", "two", "three"])
        assert read_bodies_until(ann, "three") == ["one", "two", "three"]
        ann.send("</stream:stream>")
        got = ann.read_until_closed()
        assert got.closing_tag
        acks = [el for el in got.elements if el.tag == f"{{{SM}}}a"]
        assert acks and acks[-1].get("h") == "0", [to_text(e) for e in got.elements]
        server.wait_log(r"Session of ann@example.test/phone ended \(closed by the client\) with 3 stanzas")
        assert relogin_sees(server, ben, "marker") == ["marker"]


def test_dropped_connection_gets_unacked_messages_back(own_server):
    """At-least-once: the same, but the connection breaks without a closing tag
    (SM without resumption): the next login gets the three messages again."""
    server = own_server(CONFIG, users=USERS)
    with raw_login(server, BEN, "b") as ben:
        ann = raw_login(server, ANN, "phone", sm="false")
        send_chats(ben, f"{ANN}/phone", ["one", "two", "three"])
        assert read_bodies_until(ann, "three") == ["one", "two", "three"]
        reset(ann)
        server.wait_log(r"Session of ann@example.test/phone ended \(not closed by the client\) with 3 stanzas")
        assert relogin_sees(server, ben, "marker") == ["one", "two", "three", "marker"]


def test_slixmpp_clean_disconnect_then_relogin_sees_each_message_once(own_server):
    """slixmpp 1.17 with its XEP-0198 plugin (default options) acknowledges only when
    asked and sends no <a/> before closing: after a clean disconnect and a new login
    it sees each message exactly once."""
    server = own_server(CONFIG, users=USERS)

    async def scenario() -> list[str]:
        async with logged_in(server, f"{CAT}/c", USERS[CAT]) as cat:
            dan = await sm_login(server, f"{DAN}/phone", USERS[DAN])
            await dan.available()
            for body in ("one", "two", "three"):
                cat.xmpp.send_message(mto=f"{DAN}/phone", mbody=body, mtype="chat")
            seen = [(await dan.next_message())["body"] for _ in range(3)]
            await dan.close()
            await cat.barrier()
            again = await login(server, f"{DAN}/again", USERS[DAN])
            try:
                await again.available()
                cat.xmpp.send_message(mto=DAN, mbody="marker", mtype="chat")
                while seen[-1] != "marker":
                    seen.append((await again.next_message())["body"])
            finally:
                await again.close()
            return seen

    assert run(scenario()) == ["one", "two", "three", "marker"]


def test_sigterm_gives_every_sm_client_a_last_ack_before_system_shutdown(own_server):
    """On SIGTERM a raw SM client receives <a h='N'/> counting every stanza it sent
    (here 25 messages and a ping), before <system-shutdown/> and the closing tag."""
    server = own_server(CONFIG, users=USERS)
    with raw_login(server, ANN, "a", sm="true") as ann:
        send_chats(ann, BEN, [f"m{i}" for i in range(25)])
        ann.ping_server("p")
        server.proc.send_signal(15)
        got = ann.read_until_closed(until_eof=False)
        server.wait_exit()
    names = [el.tag.split("}")[1] for el in got.elements]
    assert names[-2:] == ["a", "error"], [to_text(e) for e in got.elements]
    assert got.elements[-2].get("h") == "26"
    assert stream_error(got) == "system-shutdown"
    assert got.closing_tag
