"""Durable before acknowledged: the real server is SIGKILLed right after it
acknowledged a burst of messages under stream management (XEP-0198), restarted
on the same data directory, and every message id is accounted for.

Each test sends with a raw client that enables stream management, sends N
messages with distinct ids and ``<r/>``, and kills the server the moment
``<a h='N'/>`` arrives: whatever the server acknowledged must be found after the
restart — stored offline and delivered once, in the archive, or bounced to the
sender before the kill — never missing, never twice.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.e2e.harness import IO_TIMEOUT, HarnessError, RawClient, ServerProcess, to_text

SM = "urn:xmpp:sm:3"
MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"
DOMAIN = "example.test"
USERS = {"alice@example.test": "alice-secret", "bob@example.test": "bob-secret"}
# Every bounded wait below is generous: the machine is shared.
ACK_TIMEOUT = 120.0


def q(name: str, uri: str = CLIENT) -> str:
    return f"{{{uri}}}{name}"


def connect(server: ServerProcess, user: str, resource: str) -> RawClient:
    client = RawClient(server.port, server.cert_path())
    client.login(user, USERS[f"{user}@{DOMAIN}"], resource)
    return client


def enable_sm(client: RawClient, resume: bool = False) -> ET.Element:
    attrs = " resume='true'" if resume else ""
    client.send(f"<enable xmlns='{SM}'{attrs}/>")
    return client.expect(q("enabled", SM))


def send_burst(client: RawClient, to: str, ids: list[str], chunk: int = 100) -> None:
    for at in range(0, len(ids), chunk):
        client.send("".join(f"<message to='{to}' type='chat' id='{i}'><body>{i}</body></message>"
                            for i in ids[at:at + chunk]))


def wait_ack(client: RawClient, count: int) -> list[ET.Element]:
    """Ask for an ack and read until it covers *count* stanzas; what else came meanwhile."""
    client.send(f"<r xmlns='{SM}'/>")
    others: list[ET.Element] = []
    while True:
        el = client.next_element(ACK_TIMEOUT)
        if el.tag == q("a", SM):
            if int(el.get("h", "-1")) == count:
                return others
            raise HarnessError(f"ack for {el.get('h')} stanzas, expected {count}")
        others.append(el)


def bounced_ids(elements: list[ET.Element]) -> set[str]:
    return {el.get("id", "") for el in elements if el.tag == q("message") and el.get("type") == "error"}


def crash_and_restart(server: ServerProcess) -> None:
    server.kill()  # SIGKILL: no shutdown code runs
    server.start()


def read_messages(client: RawClient, wanted: int, timeout: float = ACK_TIMEOUT) -> list[str]:
    """Ids of the chat messages received until *wanted* came or nothing more comes."""
    ids: list[str] = []
    while len(ids) < wanted:
        try:
            el = client.next_element(timeout if not ids else IO_TIMEOUT)
        except HarnessError:
            break
        if el.tag == q("message") and el.get("type") == "chat":
            ids.append(el.get("id", ""))
    return ids


def archive_ids(client: RawClient) -> list[str]:
    """The ids of every message in the user's archive, oldest first (paged)."""
    ids: list[str] = []
    after = ""
    for page in range(100):
        rsm = f"<set xmlns='{RSM}'><max>250</max>{f'<after>{after}</after>' if after else ''}</set>"
        client.send(f"<iq type='set' id='mam{page}'><query xmlns='{MAM}' queryid='q{page}'>{rsm}</query></iq>")
        while True:
            el = client.next_element(ACK_TIMEOUT)
            if el.tag == q("message"):
                inner = el.find(f"{q('result', MAM)}/{q('forwarded', FORWARD)}/{q('message')}")
                if inner is not None:
                    ids.append(inner.get("id", ""))
            elif el.tag == q("iq") and el.get("id") == f"mam{page}":
                assert el.get("type") == "result", to_text(el)
                fin = el.find(q("fin", MAM))
                last = fin.find(f"{q('set', RSM)}/{q('last', RSM)}") if fin is not None else None
                if fin is None or fin.get("complete") == "true" or last is None:
                    return ids
                after = last.text or ""
                break
    raise HarnessError("archive paging did not end")


def make_server(own_server) -> ServerProcess:
    return own_server(overrides={"im": {"offline_quota": 5000}}, users=USERS)


def test_sigkill_after_the_ack_loses_no_message_stored_offline(own_server):
    """2,000 messages to an offline user, acknowledged, then SIGKILL: after the
    restart the user receives every one of them, once (or its sender got an error)."""
    server = make_server(own_server)
    ids = [f"off-{n}" for n in range(2000)]
    alice = connect(server, "alice", "sender")
    enable_sm(alice)
    send_burst(alice, f"bob@{DOMAIN}", ids)
    bounced = bounced_ids(wait_ack(alice, len(ids)))
    crash_and_restart(server)
    alice.close()
    bob = connect(server, "bob", "reader")
    bob.send("<presence/>")
    got = read_messages(bob, len(ids) - len(bounced))
    bob.close()
    assert len(got) == len(set(got)), "a message came twice"
    missing = set(ids) - set(got) - bounced
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"


def test_sigkill_in_the_middle_of_a_burst_loses_no_acknowledged_message(own_server):
    """1,000 messages to an offline user, <r/>, 2,000 more at once; SIGKILL as soon
    as the ack for the first 1,000 arrives, while the rest is still being handled:
    after the restart each of the first 1,000 is delivered, once."""
    server = make_server(own_server)
    ids = [f"mid-{n}" for n in range(3000)]
    alice = connect(server, "alice", "sender")
    enable_sm(alice)
    send_burst(alice, f"bob@{DOMAIN}", ids[:1000])
    alice.send(f"<r xmlns='{SM}'/>")
    send_burst(alice, f"bob@{DOMAIN}", ids[1000:])
    bounced: set[str] = set()
    while True:
        el = alice.next_element(ACK_TIMEOUT)
        if el.tag == q("a", SM):
            assert el.get("h") == "1000"
            break
        if el.tag == q("message") and el.get("type") == "error":
            bounced.add(el.get("id", ""))
    crash_and_restart(server)
    alice.close()
    bob = connect(server, "bob", "reader")
    bob.send("<presence/>")
    got = read_messages(bob, len(ids))
    bob.close()
    assert len(got) == len(set(got)), "a message came twice"
    missing = set(ids[:1000]) - set(got) - bounced
    assert not missing, f"{len(missing)} of 1000 acknowledged messages lost, e.g. {sorted(missing)[:5]}"


def test_sigkill_after_the_ack_loses_no_archive_row(own_server):
    """1,000 messages to an online user with the archive on (the default),
    acknowledged, then SIGKILL: after the restart both archives hold every one."""
    server = make_server(own_server)
    ids = [f"arc-{n}" for n in range(1000)]
    bob = connect(server, "bob", "desk")
    bob.send("<presence/>")
    alice = connect(server, "alice", "sender")
    enable_sm(alice)
    send_burst(alice, f"bob@{DOMAIN}/desk", ids)
    bounced = bounced_ids(wait_ack(alice, len(ids)))
    crash_and_restart(server)
    alice.close()
    bob.close()
    assert not bounced
    for user, resource in (("alice", "again"), ("bob", "again")):
        client = connect(server, user, resource)
        archived = archive_ids(client)
        client.close()
        assert len(archived) == len(set(archived)), f"{user}: a row twice"
        missing = set(ids) - set(archived)
        assert not missing, f"{user}: {len(missing)} acknowledged messages not archived, e.g. {sorted(missing)[:5]}"


def test_sigkill_while_a_session_hibernates_loses_nothing_it_held(own_server):
    """A resumable session's connection breaks; 200 messages for it are acknowledged
    to their sender while it hibernates; SIGKILL.  The restarted server hands them
    to offline storage: the user's next login receives each once."""
    server = make_server(own_server)
    ids = [f"hib-{n}" for n in range(200)]
    bob = connect(server, "bob", "phone")
    enable_sm(bob, resume=True)
    bob.send("<presence/>")
    bob.close()  # the connection drops without </stream:stream>
    server.wait_log(r"Hibernating bob@example\.test/phone")
    alice = connect(server, "alice", "sender")
    enable_sm(alice)
    send_burst(alice, f"bob@{DOMAIN}/phone", ids)
    bounced = bounced_ids(wait_ack(alice, len(ids)))
    crash_and_restart(server)
    alice.close()
    assert not bounced
    again = connect(server, "bob", "laptop")
    again.send("<presence/>")
    got = read_messages(again, len(ids))
    again.close()
    assert len(got) == len(set(got)), "a message came twice"
    missing = set(ids) - set(got)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"


def test_sigterm_writes_every_queued_archive_row_before_storage_closes(own_server):
    """3,000 messages sent without stream management, the clients gone, then SIGTERM
    at once: the server writes its whole archive queue before it closes storage, so
    after a restart the archive holds every message it delivered."""
    server = make_server(own_server)
    ids = [f"term-{n}" for n in range(3000)]  # 6,000 rows: more than one write batch
    bob = connect(server, "bob", "desk")
    bob.send("<presence/>")
    alice = connect(server, "alice", "sender")
    send_burst(alice, f"bob@{DOMAIN}/desk", ids)
    alice.ping_server()  # everything before it has been routed (and queued for the archive)
    # No client left to wait for: the shutdown does not linger in its grace period.
    alice.close()
    bob.close()
    assert server.exited_cleanly(server.terminate())
    server.start()
    again = connect(server, "bob", "again")
    archived = archive_ids(again)
    again.close()
    missing = set(ids) - set(archived)
    assert not missing, f"{len(missing)} delivered messages not archived, e.g. {sorted(missing)[:5]}"
