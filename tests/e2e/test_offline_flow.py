"""Large offline stores delivered at login, paced by the connection; and the
window between a client's </stream:stream> and its TCP close (issue 9, items 2
and 3), with raw clients that count every message id.

Stores are filled through the server by a raw sender; a roster write after the
messages is the barrier (SQLite runs one transaction at a time, in order, so
when it is answered every message before it is committed).  Whether a store is
empty is read from the database file itself.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import (CLIENT, HarnessError, RawClient, ServerProcess, StreamClosed, lines_matching,
                               to_text, wait_for)

SM_NS = "urn:xmpp:sm:3"
D = "example.test"
SENDER = "sender"
RECIPIENTS = ("kb_plain", "kb_sm", "fivekb_plain", "fivekb_sm", "cut_plain", "cut_sm", "closer", "watcher")
USERS = {f"{u}@{D}": f"{u}-secret" for u in (SENDER, *RECIPIENTS)}
READ_TIMEOUT = 60.0
# What the server confirms a window at a time without SM (fedxmpp.c2s.session.TRACKED_WINDOW).
WINDOW = 32 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("offline-flow"),
                           overrides={"im": {"offline_quota": 10_000}})
    server.import_users(USERS)
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.stop()
    problems = lines_matching(server.log_text(), r"Traceback|Unhandled (error|Error)")
    if problems:
        raise HarnessError("the server logged errors:\n" + "\n".join(problems))


def stored_count(server: ServerProcess, user: str) -> int:
    db = sqlite3.connect(f"file:{Path(server.data_dir) / 'fedxmpp.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM offline_messages WHERE username = ?", (user,)).fetchone()[0]
    finally:
        db.close()


def client(server: ServerProcess, user: str, resource: str, *, sm: bool) -> RawClient:
    c = RawClient(server.port, server.cert_path())
    c.login(user, USERS[f"{user}@{D}"], resource)
    if sm:
        c.send(f"<enable xmlns='{SM_NS}'/>")
        c.expect(f"{{{SM_NS}}}enabled")
    return c


def fill(server: ServerProcess, user: str, count: int, size: int) -> None:
    """*count* chat messages of about *size* bytes, ids ``<user>-<n>``, stored for *user*."""
    pad = "x" * size
    with client(server, SENDER, f"fill-{user}", sm=False) as sender:
        batch: list[str] = []
        for n in range(count):
            batch.append(f"<message to='{user}@{D}' type='chat' id='{user}-{n}'><body>{n} {pad}</body></message>")
            if len(batch) == 100:
                sender.send("".join(batch))
                batch = []
        sender.send("".join(batch))
        sender.send(f"<iq type='set' id='barrier'><query xmlns='jabber:iq:roster'>"
                    f"<item jid='nobody-{user}@{D}'/></query></iq>")
        while True:
            el = sender.next_element(READ_TIMEOUT)
            if el.tag == f"{{{CLIENT}}}message":
                raise HarnessError(f"the sender got a message back: {to_text(el)}")
            if el.tag == f"{{{CLIENT}}}iq" and el.get("id") == "barrier":
                assert el.get("type") == "result", to_text(el)
                break
    assert stored_count(server, user) == count


class Reader:
    """Reads a raw client's stream, counting stanzas as an SM client does,
    answering <r/>, and keeping the ids of the messages in arrival order."""

    def __init__(self, c: RawClient, *, sm: bool) -> None:
        self.c = c
        self.sm = sm
        self.handled = 0
        self.acked = 0
        self.ids: list[str] = []
        self.ids_when_acked = 0

    def read(self, until: int) -> None:
        """Until *until* message ids were received."""
        while len(self.ids) < until:
            self.handle(self.c.next_element(READ_TIMEOUT))

    def handle(self, el) -> None:
        if el.tag == f"{{{SM_NS}}}r":
            self.ack()
        elif el.tag.startswith(f"{{{CLIENT}}}"):
            self.handled += 1
            if el.tag == f"{{{CLIENT}}}message":
                assert el.get("type") != "error", to_text(el)
                self.ids.append(el.get("id"))

    def ack(self) -> None:
        self.c.send(f"<a xmlns='{SM_NS}' h='{self.handled}'/>")
        self.acked, self.ids_when_acked = self.handled, len(self.ids)

    def sync_acks(self) -> None:
        """Acknowledge what was received, then wait until the server has read
        that <a h/>: its answer to the <r/> sent after it (a stream is in order).
        An ack the server never read (lost in a reset connection) acknowledges
        nothing."""
        self.ack()
        self.c.send(f"<r xmlns='{SM_NS}'/>")
        while True:
            el = self.c.next_element(READ_TIMEOUT)
            if el.tag == f"{{{SM_NS}}}a":
                return
            if el.tag != f"{{{SM_NS}}}r":
                self.handle(el)

    def close_cleanly(self) -> None:
        """</stream:stream>, then read to the end: everything the server wrote before
        its own closing tag counts."""
        if self.sm:
            self.ack()
        self.c.send("</stream:stream>")
        before = len(self.c.received.elements) - len(self.c._pending)  # parsed, not yet handled
        received = self.c.read_until_closed(READ_TIMEOUT)
        for el in received.elements[before:]:
            if el.tag != f"{{{SM_NS}}}r":
                self.handle(el)


def expected(user: str, count: int) -> list[str]:
    return [f"{user}-{n}" for n in range(count)]


@pytest.mark.parametrize("user,count,size,sm", [
    ("kb_plain", 5000, 1000, False),
    ("kb_sm", 5000, 1000, True),
    ("fivekb_plain", 1000, 5000, False),
    ("fivekb_sm", 1000, 5000, True),
])
def test_large_store_arrives_complete_in_order(srv, user, count, size, sm):
    """5,000 × 1 KB and 1,000 × 5 KB stored messages (5 MB, past the 4 MiB
    send-buffer limit) all arrive at a client reading at normal speed, in order
    and once, with and without stream management; afterwards the store is empty."""
    fill(srv, user, count, size)
    with client(srv, user, "r", sm=sm) as c:
        reader = Reader(c, sm=sm)
        c.send("<presence/>")
        reader.read(count)
        assert reader.ids == expected(user, count)
        reader.close_cleanly()
        assert reader.ids == expected(user, count)
    wait_for(lambda: stored_count(srv, user) == 0, 30, what=f"{user}'s store to be emptied")


@pytest.mark.parametrize("user,sm", [("cut_plain", False), ("cut_sm", True)])
def test_client_leaving_mid_flush_gets_the_rest_at_next_login(srv, user, sm):
    """A client that leaves after 300 of 1,000 × 5 KB messages gets the rest at
    its next login: no id is lost.  Duplicates are only those SM's at-least-once
    allows — received after the client's last <a h/> — and, without SM, at most
    the last window the server had not yet confirmed when the close began (its
    buffer was full then).  The SM client drops TCP; the other closes its stream."""
    count = 1000
    fill(srv, user, count, 5000)
    with client(srv, user, "first", sm=sm) as c:
        first = Reader(c, sm=sm)
        c.send("<presence/>")
        first.read(300)
        if sm:
            first.sync_acks()
            unacked = set(first.ids[first.ids_when_acked:])  # received after the last ack
            c.close()  # the network goes: no closing tag, no more acks
        else:
            first.close_cleanly()
            unacked = set()
    with client(srv, user, "second", sm=False) as c:
        second = Reader(c, sm=False)
        c.send("<presence/>")
        seen = set(first.ids)
        missing = [i for i in expected(user, count) if i not in seen]
        deadline = time.monotonic() + READ_TIMEOUT
        while not set(missing) <= set(second.ids):
            assert time.monotonic() < deadline, f"{len(set(missing) - set(second.ids))} ids never came"
            try:
                second.handle(c.next_element(READ_TIMEOUT))
            except StreamClosed:
                break
        second.close_cleanly()
    assert set(first.ids) | set(second.ids) == set(expected(user, count)), "ids lost"
    assert second.ids == sorted(second.ids, key=lambda i: int(i.rsplit("-", 1)[1])), "out of order"
    assert len(second.ids) == len(set(second.ids))
    duplicates = set(first.ids) & set(second.ids)
    if sm:
        assert duplicates <= unacked, f"acknowledged and delivered again: {sorted(duplicates - unacked)}"
    else:
        assert len(duplicates) <= WINDOW // 5000 + 1, f"delivered twice: {sorted(duplicates)}"
    wait_for(lambda: stored_count(srv, user) == 0, 30, what=f"{user}'s store to be emptied")


def test_no_silent_window_after_a_client_closes_its_stream(srv):
    """Client A sends </stream:stream> and keeps TCP open 2 s while B sends 60
    messages with ids, half to A's full JID and half to its bare JID.  Each one
    ends delivered before the close, stored (delivered at A's next login), or
    bounced to B with an error: 0 missing."""
    a_user, a_jid = "closer", f"closer@{D}"
    with client(srv, "watcher", "b", sm=False) as b:
        with client(srv, a_user, "a", sm=False) as a:
            a.send("<presence/>")
            a.ping_server("a-ready")
            ids = [f"w-{n}" for n in range(60)]
            for n, ident in enumerate(ids[:10]):  # before the close
                to = f"{a_jid}/a" if n % 2 else a_jid
                b.send(f"<message to='{to}' type='chat' id='{ident}'><body>{ident}</body></message>")
            b.ping_server("b-sent-early")
            a.send("</stream:stream>")
            got = a.read_until_closed(READ_TIMEOUT, until_eof=False)  # the server's closing tag
            assert got.closing_tag
            sent_at = time.monotonic()
            for n, ident in enumerate(ids[10:]):
                to = f"{a_jid}/a" if n % 2 else a_jid
                b.send(f"<message to='{to}' type='chat' id='{ident}'><body>{ident}</body></message>")
            b.ping_server("b-sent-late")
            time.sleep(max(0.0, 2.0 - (time.monotonic() - sent_at)))  # A's TCP stays open 2 s
            before_close = {el.get("id") for el in a.read_until_closed(READ_TIMEOUT).elements
                            if el.tag == f"{{{CLIENT}}}message"}
        bounced: set[str] = set()
        b.ping_server("b-collect")
        for el in b.received.elements:
            if el.tag == f"{{{CLIENT}}}message" and el.get("type") == "error":
                bounced.add(el.get("id"))
    waiting = stored_count(srv, a_user)  # B's barrier came back: every store is committed
    with client(srv, a_user, "again", sm=False) as a:
        reader = Reader(a, sm=False)
        a.send("<presence/>")
        reader.read(waiting)
        stored = set(reader.ids)
        reader.close_cleanly()
    accounted = before_close | bounced | stored
    missing = sorted(set(ids) - accounted, key=lambda i: int(i[2:]))
    assert missing == [], (f"{len(missing)} of 60 missing (delivered {len(before_close)}, bounced {len(bounced)}, "
                           f"stored {len(stored)}): {missing}")
    assert len(reader.ids) == len(stored) == waiting
