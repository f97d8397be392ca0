"""xmpp.js (``@xmpp/client`` from npm, on Debian's Node) as a client of fedxmpp.

tests/interop/xmppjs/client.mjs is one xmpp.js session driven over its stdin
and stdout (JSON lines); ``npm ci`` in that directory installs the pinned
version (.ci/run does).  The other party of a conversation is slixmpp.  One
fedxmpp serves the module; each test uses its own accounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, lines_matching, logged_in, run

pytestmark = pytest.mark.interop

NODE = shutil.which("node")
XMPPJS = Path(__file__).parent / "xmppjs"
WAIT = 20.0
USERS = {"jade@example.test": "jade-pw", "june@example.test": "june-pw", "jo@example.test": "jo-pw",
         "mia@example.test": "mia-pw", "kim@example.test": "kim-pw", "sam@example.test": "sam-pw"}


class XmppJs:
    """``node client.mjs``: one xmpp.js client, its events read by a thread."""

    def __init__(self, server: ServerProcess, jid: str, *, direct_tls: bool = False, resource: str = "js") -> None:
        user, domain = jid.split("@")
        port = server.tls_port if direct_tls else server.port
        env = dict(os.environ, XMPP_SERVICE=f"{'xmpps' if direct_tls else 'xmpp'}://127.0.0.1:{port}",
                   XMPP_DOMAIN=domain, XMPP_USERNAME=user, XMPP_PASSWORD=USERS[jid], XMPP_RESOURCE=resource,
                   NODE_EXTRA_CA_CERTS=str(server.cert_path(domain)))
        self.proc = subprocess.Popen([NODE, str(XMPPJS / "client.mjs")], cwd=XMPPJS, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.events.put({"event": "garbage", "line": line})
        self.events.put({"event": "exit"})

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda e: True,
               timeout: float = WAIT) -> dict[str, Any]:
        """The next *event* for which *where* holds; others are kept in :attr:`seen`.
        An error or the process's end first is a failure."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                got = self.events.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise HarnessError(f"xmpp.js: no {event} within {timeout}s; seen {self.seen}; "
                                   f"stderr: {self.stderr()}") from None
            self.seen.append(got)
            if got["event"] == event and where(got):
                return got
            if got["event"] in ("error", "exit"):
                raise HarnessError(f"xmpp.js: {got} while waiting for {event}; seen {self.seen}; "
                                   f"stderr: {self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if NODE is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs)")
    if not (XMPPJS / "node_modules" / "@xmpp" / "client").is_dir():
        pytest.skip("xmpp.js is not installed (cd tests/interop/xmppjs && npm ci)")
    srv = ServerProcess(tmp_path_factory.mktemp("xmppjs"))
    srv.import_users(USERS)
    srv.start()
    try:
        yield srv
    finally:
        if srv.running:
            srv.stop()
    problems = lines_matching(srv.log_text(), r"Traceback|Unhandled (error|Error)")
    if problems:
        raise HarnessError("fedxmpp logged errors:\n" + "\n".join(problems))


@pytest.fixture
def xmppjs() -> Iterator[Callable[..., XmppJs]]:
    started: list[XmppJs] = []

    def start(*args: Any, **kw: Any) -> XmppJs:
        client = XmppJs(*args, **kw)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


def test_login_over_starttls_and_roster_get(server, xmppjs):
    """xmpp.js logs in over STARTTLS (SCRAM, resource binding) and fetches the
    roster that a slixmpp session of the same account set up."""
    async def add_contact():
        async with logged_in(server, "jade@example.test/setup", USERS["jade@example.test"]) as jade:
            await jade.xmpp.update_roster("sam@example.test", name="Sam", groups=["interop"])
    run(add_contact())

    js = xmppjs(server, "jade@example.test")
    online = js.expect("online")
    assert online["jid"] == "jade@example.test/js", online
    assert online["tls"] in ("TLSv1.2", "TLSv1.3"), online
    js.send(cmd="roster")
    roster = js.expect("roster")
    assert {"jid": "sam@example.test", "subscription": "none", "name": "Sam"} in roster["items"], roster


def test_login_over_direct_tls(server, xmppjs):
    """xmpp.js logs in over direct TLS (XEP-0368, an ``xmpps://`` service)."""
    js = xmppjs(server, "june@example.test", direct_tls=True)
    online = js.expect("online")
    assert online["jid"] == "june@example.test/js", online
    assert online["tls"] in ("TLSv1.2", "TLSv1.3"), online
    js.send(cmd="roster")
    assert js.expect("roster")["items"] == []


def test_messages_both_ways_with_slixmpp(server, xmppjs):
    """An xmpp.js user and a slixmpp user exchange chat messages both ways."""
    js = xmppjs(server, "jo@example.test")
    js.expect("online")
    js.send(cmd="presence")
    js.expect("sent")

    async def scenario():
        async with logged_in(server, "sam@example.test/chat", USERS["sam@example.test"]) as sam:
            sam.xmpp.send_message(mto="jo@example.test/js", mbody="hello xmpp.js", mtype="chat")
            got = await asyncio.to_thread(js.expect, "message")
            assert (got["from"], got["body"], got["type"]) == ("sam@example.test/chat", "hello xmpp.js", "chat")
            js.send(cmd="send", to="sam@example.test/chat", body="hello slixmpp")
            msg = await sam.next_message(WAIT)
            assert msg["body"] == "hello slixmpp" and msg["from"].full == "jo@example.test/js", msg

    run(scenario(), timeout=90)


def test_mam_query(server, xmppjs):
    """Messages slixmpp sent to an offline xmpp.js user are in the user's archive:
    a XEP-0313 query (filtered by 'with') returns them in order, complete."""
    async def send_some():
        async with logged_in(server, "sam@example.test/mam", USERS["sam@example.test"]) as sam:
            for n in (1, 2, 3):
                sam.xmpp.send_message(mto="mia@example.test", mbody=f"archived {n}", mtype="chat")
            await sam.barrier()
    run(send_some())

    js = xmppjs(server, "mia@example.test")
    js.expect("online")
    js.send(cmd="mam", **{"with": "sam@example.test"})
    result = js.expect("mam")
    assert [i["body"] for i in result["items"]] == ["archived 1", "archived 2", "archived 3"], result
    assert all(i["from"].startswith("sam@example.test") for i in result["items"]), result
    assert result["complete"] is True, result


def test_stream_management_resume(server, xmppjs):
    """xmpp.js enables stream management; its connection dies without a word; a
    message sent meanwhile waits on the server, and when xmpp.js reconnects and
    resumes the session (XEP-0198) the message arrives, once, on the same
    session (no new login)."""
    js = xmppjs(server, "kim@example.test")
    js.expect("online")
    js.send(cmd="presence")
    js.expect("sent")

    async def scenario():
        async with logged_in(server, "sam@example.test/sm", USERS["sam@example.test"]) as sam:
            sam.xmpp.send_message(mto="kim@example.test/js", mbody="before the drop", mtype="chat")
            got = await asyncio.to_thread(js.expect, "message")
            assert got["body"] == "before the drop", got
            js.send(cmd="drop")
            await asyncio.to_thread(js.expect, "dropped")
            sam.xmpp.send_message(mto="kim@example.test/js", mbody="while away", mtype="chat")
            await sam.barrier()
            # xmpp.js reports the resumption once the server's resent stanzas are in.
            await asyncio.to_thread(js.expect, "resumed", timeout=30)
            if not any(e["event"] == "message" and e["body"] == "while away" for e in js.seen):
                await asyncio.to_thread(js.expect, "message", lambda e: e["body"] == "while away")
            js.send(cmd="send", to="sam@example.test/sm", body="back again")
            msg = await sam.next_message(WAIT)
            assert msg["body"] == "back again" and msg["from"].full == "kim@example.test/js", msg

    run(scenario(), timeout=90)
    after_drop = js.seen[[e["event"] for e in js.seen].index("dropped"):]
    assert [e for e in after_drop if e["event"] == "online"] == [], js.seen
    assert [e["body"] for e in js.seen if e["event"] == "message"] == ["before the drop", "while away"], js.seen
    server.wait_log(r"Resumed kim@example\.test/js")
