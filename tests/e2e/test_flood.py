"""A bounded flood against the real server: one client sends 20,000 × 1 KB messages
to a user whose client does not read.  Shaping and backpressure keep the server's
memory bounded, and another user is still served meanwhile.

The ping round trips are measured and printed (run with ``-s`` to see them),
never asserted: speed goals live in bench/."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.harness import RawClient, ServerProcess

DOMAIN = "example.test"
USERS = {f"{name}@{DOMAIN}": f"{name}-secret" for name in ("flood", "sink", "pinger")}
MESSAGES = 20_000
BATCH = 100
FLOOD_SECONDS = 12.0
RSS_BOUND_KIB = 30 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def raw_login(server: ServerProcess, user: str) -> RawClient:
    client = RawClient(server.port, server.cert_path())
    client.login(user, USERS[f"{user}@{DOMAIN}"], "r")
    return client


class Flood(threading.Thread):
    """Sends MESSAGES messages of 1 KB in batches until all are out or the deadline
    passes (the server may stop reading from it: a send then blocks)."""

    def __init__(self, client: RawClient, to: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.client, self.to, self.deadline = client, to, deadline
        self.sent = 0
        self.blocked = False

    def run(self) -> None:
        body = "x" * 1000
        batch = "".join(f"<message to='{self.to}' type='chat'><body>{body}</body></message>"
                        for _ in range(BATCH)).encode()
        sock = self.client.t.sock
        while self.sent < MESSAGES:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.blocked = True
                return
            sock.settimeout(remaining)
            try:
                sock.sendall(batch)
            except (socket.timeout, TimeoutError):
                self.blocked = True
                return
            except OSError:
                return
            self.sent += BATCH


@pytest.mark.parametrize("limits", [{}, {"c2s_rate": 0}], ids=["default shaper", "backpressure alone"])
def test_flood_to_a_client_that_does_not_read_keeps_memory_bounded(own_server, limits):
    """Server RSS stays within +30 MB of where it started while 20,000 × 1 KB go to a
    user that does not read, and a third user's XEP-0199 pings are all answered —
    with the default shaper, and with shaping off (backpressure alone)."""
    server = own_server({"limits": limits} if limits else None, users=USERS)
    pid = server.proc.pid
    sink = raw_login(server, "sink")
    flooder = raw_login(server, "flood")
    pinger = raw_login(server, "pinger")
    try:
        pinger.ping_server("warm")
        start = rss_kib(pid)
        peak = start
        rtts: list[float] = []
        flood = Flood(flooder, sink.jid, time.monotonic() + FLOOD_SECONDS)
        flood.start()
        i = 0
        while flood.is_alive():
            i += 1
            t0 = time.monotonic()
            reply = pinger.ping_server(f"p{i}")
            rtts.append((time.monotonic() - t0) * 1000)
            assert reply.get("type") == "result"
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)
        flood.join(5)
        peak = max(peak, rss_kib(pid))
        print(f"\nflood ({limits or 'defaults'}): {flood.sent} of {MESSAGES} messages sent in {FLOOD_SECONDS:.0f} s "
              f"(held by the server: {flood.blocked}); server RSS {start / 1024:.1f} MiB -> peak "
              f"{peak / 1024:.1f} MiB (+{(peak - start) / 1024:.1f}); {len(rtts)} pings: p50 "
              f"{statistics.median(rtts):.1f} ms, max {max(rtts):.1f} ms")
        assert peak - start <= RSS_BOUND_KIB, f"RSS grew by {(peak - start) / 1024:.1f} MiB"
        assert rtts, "no ping answered during the flood"
    finally:
        for client in (flooder, sink, pinger):
            client.close()


def test_two_clients_flooding_each_other_without_reading_do_not_deadlock(own_server):
    """Two clients send to each other as fast as they can and read nothing: each is
    held by the other's full buffer, so without a way out both would wait for ever.
    The stall limit (here 2 s) closes one with <resource-constraint/> well before the
    floods' deadline, and the server goes on serving a third user."""
    server = own_server({"limits": {"c2s_rate": 0, "max_send_stall": 2.0}}, users=USERS)
    flood, sink = raw_login(server, "flood"), raw_login(server, "sink")
    pinger = raw_login(server, "pinger")
    try:
        deadline = time.monotonic() + 30.0
        floods = [Flood(flood, sink.jid, deadline), Flood(sink, flood.jid, deadline)]
        for f in floods:
            f.start()
        while all(f.is_alive() for f in floods) and time.monotonic() < deadline + 1:
            assert pinger.ping_server("during").get("type") == "result"
            time.sleep(0.1)
        assert any(not f.is_alive() and not f.blocked for f in floods), "both floods were held to the deadline"
        assert "while 1 senders waited" in server.log_text()
        assert pinger.ping_server("after").get("type") == "result"
    finally:
        for client in (flood, sink, pinger):
            client.close()
