"""fedxmpp load benchmark: logins/s, memory per session, routed messages/s and latency.

Usage (from the repository root)::

    .venv/bin/python bench/run.py [--clients N] [--messages M] [--json FILE]

It starts its own server (``twistd -n fedxmpp`` with a temporary config for the
domain ``bench.test`` on a free loopback port), provisions the accounts with
``fedxmpp import-users``, drives it with a lean asyncio client of its own
(``bench/xmppload.py``: STARTTLS, SCRAM-SHA-256, bind, presence) and stops it
with SIGTERM.  It is a benchmark, not a test: it prints figures and asserts
nothing about timing.  See ``bench/README.rst`` for what each figure means.

Phases:

1. *login cold*: N clients log in concurrently (at most --concurrency in
   flight): TCP + STARTTLS + SCRAM-SHA-256 + bind, then ``<presence/>``.  The
   client derives each user's SaltedPassword here (PBKDF2) and caches it.
2. *memory*: server VmRSS with 0 sessions (after start and one warm-up login)
   and with N sessions bound, then with --sessions-for-memory sessions.
3. *login warm*: all sessions closed, the N clients log in again, now with the
   cached SaltedPassword: the client's share of SCRAM is a few HMACs.
4. *messages*: clients in pairs send each other M messages in total, with at
   most --window unanswered (not yet received) messages per sender.
5. *presence* (RFC 6121): the clients subscribe to their R nearest neighbours on
   a ring (--roster), all log out, and all log in again with a roster get and
   initial presence: presence stanzas delivered per second until every client
   has seen all R contacts; then each sends --presence-updates updates, each
   broadcast to its R contacts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import ssl
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serverproc import DOMAIN, BenchServer, ServerError  # noqa: E402
from xmppload import (T_BODY, T_IQ, T_MESSAGE, T_PRESENCE, T_STATUS, Client, ScramCache,  # noqa: E402
                      XMPPError, make_ssl_context)

HOST = "127.0.0.1"
PING = "<iq type='get' id='{id}' to='" + DOMAIN + "'><ping xmlns='urn:xmpp:ping'/></iq>"
ROSTER_GET = b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>"


def user_name(i: int) -> str:
    return f"u{i:05d}"


def password(i: int) -> str:
    return f"bench-pw-{i:05d}"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def client_cpu() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy() -> float:
    """CPU seconds spent busy by the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    count: int = 0
    wall: float = 0.0
    rate: float | None = None
    lat_ms: list[float] = field(default_factory=list)
    srv_cpu: float | None = None
    db_cpu: float | None = None
    cli_cpu: float | None = None
    other_cpu: float | None = None
    failures: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        lat = self.lat_ms
        return {
            "count": self.count, "wall_s": round(self.wall, 3),
            "rate_per_s": round(self.rate, 1) if self.rate is not None else None,
            "latency_ms": {"p50": _r(pct(lat, 50)), "p99": _r(pct(lat, 99)), "max": _r(max(lat) if lat else None),
                           "mean": _r(statistics.fmean(lat) if lat else None)} if lat else None,
            "server_cpu_s": _r(self.srv_cpu), "database_cpu_s": _r(self.db_cpu), "client_cpu_s": _r(self.cli_cpu),
            "other_cpu_s": _r(self.other_cpu),
            "failures": self.failures, "notes": self.notes,
        }


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


class Bench:
    def __init__(self, args: argparse.Namespace, server: BenchServer) -> None:
        self.args = args
        self.server = server
        self.ssl_context: ssl.SSLContext | None = None
        self.scram = ScramCache()
        self.clients: dict[int, Client] = {}
        self.iq_waiters: dict[str, asyncio.Future] = {}
        self.phases: list[Phase] = []
        self.memory: dict[str, float] = {}
        self.msg: MessageStats | None = None
        # Called with (client index, <presence/>) during the presence phases.
        self.on_presence = None
        self.login_started: dict[int, float] = {}
        self.nodelay: set[bool | None] = set()
        self.tls_versions: set[str] = set()
        # CPU seconds of a database server's processes (PostgreSQL), when there is one.
        self.db_cpu: Callable[[], float] | None = None

    # -- measuring a phase -------------------------------------------------------------

    def begin(self, name: str) -> tuple[Phase, float, float, float]:
        p = Phase(name)
        self.phases.append(p)
        self._busy0 = machine_busy()
        self._db0 = self.db_cpu() if self.db_cpu is not None else 0.0
        return p, time.perf_counter(), self.server.cpu_seconds(), client_cpu()

    def end(self, p: Phase, t0: float, s0: float, c0: float) -> None:
        p.wall = time.perf_counter() - t0
        p.srv_cpu = self.server.cpu_seconds() - s0
        p.cli_cpu = client_cpu() - c0
        p.db_cpu = self.db_cpu() - self._db0 if self.db_cpu is not None else None
        # Everything else on the machine (other processes, kernel work not charged to us).
        p.other_cpu = max(0.0, machine_busy() - self._busy0 - p.srv_cpu - p.cli_cpu - (p.db_cpu or 0.0))

    # -- stanzas of bound clients ---------------------------------------------------------

    def dispatcher(self, index: int):
        def on_stanza(el) -> None:
            tag = el.tag
            if tag == T_MESSAGE:
                if self.msg is not None:
                    self.msg.received_stanza(index, el)
            elif tag == T_PRESENCE:
                if self.on_presence is not None:
                    self.on_presence(index, el)
            elif tag == T_IQ:
                fut = self.iq_waiters.pop(el.get("id", ""), None)
                if fut is not None and not fut.done():
                    fut.set_result(el)
        return on_stanza

    # -- logins -----------------------------------------------------------------------------

    async def login_many(self, name: str, indices: list[int], *, timeout: float,
                         concurrency: int | None = None, after_login: bytes = b"<presence/>") -> Phase:
        sem = asyncio.Semaphore(concurrency or self.args.concurrency)
        p, t0, s0, c0 = self.begin(name)
        errors: dict[str, int] = {}

        async def one(i: int) -> None:
            async with sem:
                c = Client(HOST, self.server.port, DOMAIN, user_name(i), password(i),
                           ssl_context=self.ssl_context, scram=self.scram, on_stanza=self.dispatcher(i))
                t = self.login_started[i] = time.perf_counter()
                try:
                    await asyncio.wait_for(c.login(), self.args.login_timeout)
                except asyncio.CancelledError:  # the phase timed out: drop the socket
                    if c.writer is not None:
                        c.writer.transport.abort()
                    raise
                except (XMPPError, OSError, ssl.SSLError, asyncio.TimeoutError, ValueError, KeyError) as e:
                    reason = f"{type(e).__name__}: {e}"[:160]
                    errors[reason] = errors.get(reason, 0) + 1
                    p.failures += 1
                    await c.close(1.0)
                    return
                p.lat_ms.append((time.perf_counter() - t) * 1000)
                self.nodelay.add(c.nodelay)
                self.tls_versions.add(c.tls_version)
                c.start_reading()
                self.clients[i] = c
                c.send(after_login)

        tasks = [asyncio.ensure_future(one(i)) for i in indices]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            p.failures += len(pending)
            errors[f"phase timeout ({timeout:.0f}s)"] = len(pending)
        self.end(p, t0, s0, c0)
        p.count = len(p.lat_ms)
        p.rate = p.count / p.wall if p.wall else None
        p.notes += [f"{n} x {reason}" for reason, n in errors.items()]
        return p

    async def barrier(self, indices: list[int], timeout: float = 30.0) -> int:
        """A ping round trip per client: the server has handled everything sent before."""
        loop = asyncio.get_running_loop()
        futs = []
        for i in indices:
            c = self.clients.get(i)
            if c is None or c.writer is None:
                continue
            iq_id = f"ping-{i}-{time.monotonic_ns()}"
            fut = loop.create_future()
            self.iq_waiters[iq_id] = fut
            c.send(PING.format(id=iq_id).encode())
            futs.append(fut)
        if not futs:
            return 0
        done, pending = await asyncio.wait(futs, timeout=timeout)
        for f in pending:
            f.cancel()
        return len(pending)

    async def close_many(self, indices: list[int]) -> None:
        clients = [self.clients.pop(i) for i in indices if i in self.clients]
        sem = asyncio.Semaphore(200)

        async def one(c: Client) -> None:
            async with sem:
                await c.close(5.0)

        await asyncio.gather(*(one(c) for c in clients))

    async def settle_rss(self) -> int:
        await asyncio.sleep(0.5)
        return self.server.rss_kib()

    # -- the whole run ------------------------------------------------------------------------

    async def run(self) -> None:
        a = self.args
        self.ssl_context = make_ssl_context(str(self.server.cert_file))
        n, s = a.clients, max(a.sessions_for_memory, a.clients)
        warm = a.users_total - 1  # the extra account

        self.memory["rss_start_kib"] = self.server.rss_kib()
        # One login and logout first: lazy imports and one-time allocations (TLS context,
        # storage threads) are not charged to the sessions.
        wp = await self.login_many("warm-up (1 login)", [warm], timeout=30)
        await self.barrier([warm])
        await self.close_many([warm])
        self.phases.remove(wp)
        if wp.failures:
            raise XMPPError("warm-up login failed: " + "; ".join(wp.notes))
        rss0 = self.memory["rss_0_kib"] = await self.settle_rss()

        p1 = await self.login_many("login cold", list(range(n)), timeout=a.phase_timeout)
        p1.notes.insert(0, "client derives SaltedPassword (PBKDF2) per user")
        lost = await self.barrier(list(range(n)))
        if lost:
            p1.notes.append(f"{lost} ping barrier replies missing")
        rss_n = self.memory[f"rss_{n}_kib"] = await self.settle_rss()
        self.memory["sessions_n"] = len(self.clients)
        self.memory["per_session_kib_n"] = (rss_n - rss0) / max(1, len(self.clients))

        if s > n:
            px = await self.login_many(f"login cold +{s - n}", list(range(n, s)), timeout=a.phase_timeout)
            await self.barrier(list(range(n, s)))
            rss_s = self.memory[f"rss_{s}_kib"] = await self.settle_rss()
            self.memory["sessions_s"] = len(self.clients)
            self.memory["per_session_kib_s"] = (rss_s - rss0) / max(1, len(self.clients))
            px.notes.insert(0, "for the memory figure")

        await self.close_many(list(self.clients))
        await asyncio.sleep(0.5)
        self.memory["rss_after_close_kib"] = self.server.rss_kib()

        # Unloaded latency: one login at a time.
        k = min(a.serial, n)
        if k:
            ps = await self.login_many("login 1 at a time", list(range(k)), timeout=a.phase_timeout, concurrency=1)
            ps.notes.insert(0, "cached SaltedPassword; latency without queueing")
            await self.close_many(list(range(k)))

        p3 = await self.login_many("login warm", list(range(n)), timeout=a.phase_timeout)
        p3.notes.insert(0, "client reuses cached SaltedPassword")
        await self.barrier(list(range(n)))

        if a.serial:
            await self.messages("messages 1 pair, w=1", [0, 1], a.serial * 10, 1)
        await self.messages("messages", list(range(n)), a.messages, a.window)
        self.memory["rss_after_messages_kib"] = self.server.rss_kib()
        if a.roster:
            await self.presence(list(range(n)), a.roster, a.presence_updates)
        await self.close_many(list(self.clients))

    # -- presence (RFC 6121) ------------------------------------------------------------------------

    async def wait_until(self, p: Phase, done, progress) -> bool:
        """Poll until done() (True), the phase timeout or a stall in progress() (False)."""
        a = self.args
        deadline = time.perf_counter() + a.phase_timeout
        last, last_t = -1, time.perf_counter()
        while not done():
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            count = progress()
            if count != last:
                last, last_t = count, now
            elif now - last_t > a.stall_timeout or now > deadline:
                p.notes.append("STALLED")
                return False
        return True

    async def presence(self, indices: list[int], roster: int, updates: int) -> None:
        live = [i for i in indices if i in self.clients]
        half = roster // 2
        if half < 1 or len(live) < 2 * half + 1:
            return
        k_of = {i: k for k, i in enumerate(live)}
        jid = {i: f"{user_name(i)}@{DOMAIN}" for i in live}
        index_of = {v: i for i, v in jid.items()}
        ahead = {i: [live[(k_of[i] + d) % len(live)] for d in range(1, half + 1)] for i in live}
        contacts = {i: set(ahead[i]) | {live[(k_of[i] - d) % len(live)] for d in range(1, half + 1)} for i in live}
        r = 2 * half

        # 1. Subscriptions: each client asks the half of its contacts ahead of it on the
        # ring; the asked one approves and asks back; the asker approves: 4 stanzas a pair.
        asked = {i: set(ahead[i]) for i in live}
        approved_by: dict[int, set[int]] = {i: set() for i in live}
        received = [0]  # subscription stanzas of any kind: the progress of the phase

        def subscribe_handler(i: int, el) -> None:
            ptype, frm = el.get("type"), index_of.get(el.get("from", "").split("/", 1)[0])
            if frm is None:
                return
            c = self.clients.get(i)
            if ptype in ("subscribe", "subscribed"):
                received[0] += 1
            if ptype == "subscribe" and c is not None and c.writer is not None:
                c.send(f"<presence to='{jid[frm]}' type='subscribed'/>".encode())
                if frm not in asked[i]:
                    asked[i].add(frm)
                    c.send(f"<presence to='{jid[frm]}' type='subscribe'/>".encode())
            elif ptype == "subscribed":
                approved_by[i].add(frm)

        self.on_presence = subscribe_handler
        p, t0, s0, c0 = self.begin(f"subscriptions R={r}")
        for i in live:
            self.clients[i].send(b"".join(f"<presence to='{jid[j]}' type='subscribe'/>".encode() for j in ahead[i]))
        pairs = len(live) * half
        await self.wait_until(p, lambda: all(len(v) == r for v in approved_by.values()), lambda: received[0])
        self.end(p, t0, s0, c0)
        p.count = sum(len(v) for v in approved_by.values()) // 2
        p.rate = p.count / p.wall if p.wall else None
        p.failures = pairs - p.count
        p.notes.append(f"{pairs} mutual subscriptions (4 stanzas each) on a ring of {len(live)}, "
                       f"{r} contacts per user; rate = subscriptions/s")
        self.on_presence = None
        await self.barrier(live)
        await self.close_many(live)

        # 2. Everyone logs in again: roster get, initial presence; the server probes and
        # broadcasts.  Done when every client has seen every contact available.
        seen: dict[int, set[int]] = {i: set() for i in live}
        stats = {"contact": 0, "other": 0, "t_last": 0.0}
        full_view_ms: list[float] = []

        def login_handler(i: int, el) -> None:
            frm = index_of.get(el.get("from", "").split("/", 1)[0])
            if el.get("type") is None and frm in contacts[i]:
                stats["contact"] += 1
                stats["t_last"] = time.perf_counter()
                if frm not in seen[i]:
                    seen[i].add(frm)
                    if len(seen[i]) == r:
                        full_view_ms.append((stats["t_last"] - self.login_started[i]) * 1000)
            else:
                stats["other"] += 1

        self.on_presence = login_handler
        pp, t0, s0, c0 = self.begin(f"presence at login R={r}")
        pl = await self.login_many(f"login R={r}", live, timeout=self.args.phase_timeout,
                                   after_login=ROSTER_GET + b"<presence/>")
        pl.notes.insert(0, "roster get + initial presence, pipelined after bind")
        self.phases.remove(pp)
        self.phases.append(pp)  # keep the table in order: logins, then presence
        await self.wait_until(pp, lambda: len(full_view_ms) == len(live), lambda: stats["contact"])
        self.end(pp, t0, s0, c0)
        pp.wall = (stats["t_last"] or time.perf_counter()) - t0
        pp.count = stats["contact"]
        pp.rate = pp.count / pp.wall if pp.wall > 0 else None
        pp.lat_ms = full_view_ms
        pp.failures = len(live) - len(full_view_ms)
        pp.notes.append(f"count = available presence from contacts delivered ({len(live)} x {r} needed, "
                        f"{pp.count - len(live) * r} beyond: broadcast and probe answer crossing); "
                        f"{stats['other']} other presence (own echoes, 'unavailable' answers to probes of contacts "
                        "not yet online); latency = login start to seeing "
                        "all contacts")
        await self.barrier(live)

        # 3. Presence updates: each client broadcasts `updates` changes to its contacts.
        if updates < 1:
            self.on_presence = None
            return
        got = {"n": 0, "t_last": 0.0}
        lat: list[float] = []

        def update_handler(i: int, el) -> None:
            status = el.findtext(T_STATUS)
            if status is None or not status.startswith("u:"):
                return
            frm = index_of.get(el.get("from", "").split("/", 1)[0])
            if frm in contacts[i]:
                now = time.perf_counter()
                got["n"] += 1
                got["t_last"] = now
                lat.append((now - float(status[2:])) * 1000)

        self.on_presence = update_handler
        pu, t0, s0, c0 = self.begin(f"presence updates R={r}")
        expected = len(live) * updates * r
        for _ in range(updates):
            for i in live:
                c = self.clients.get(i)
                if c is not None and c.writer is not None:
                    c.send(f"<presence><status>u:{time.perf_counter()!r}</status></presence>".encode())
            await asyncio.sleep(0)
        await self.wait_until(pu, lambda: got["n"] >= expected, lambda: got["n"])
        self.end(pu, t0, s0, c0)
        pu.wall = (got["t_last"] or time.perf_counter()) - t0
        pu.count = got["n"]
        pu.rate = pu.count / pu.wall if pu.wall > 0 else None
        pu.lat_ms = lat
        pu.failures = max(0, expected - got["n"])
        pu.notes.append(f"{len(live)} clients x {updates} updates x {r} contacts; rate = deliveries/s, "
                        "latency = send to receipt")
        self.on_presence = None

    # -- messages -------------------------------------------------------------------------------

    async def messages(self, name: str, indices: list[int], total: int, window: int) -> None:
        a = self.args
        live = [i for i in indices if i in self.clients]
        if len(live) < 2 or total < 1:
            return
        pos = {i: k for k, i in enumerate(live)}
        partner = {i: live[pos[i] ^ 1] if (pos[i] ^ 1) < len(live) else live[0] for i in live}
        base, extra = divmod(total, len(live))
        quota = {i: base + (1 if k < extra else 0) for k, i in enumerate(live)}
        ms = self.msg = MessageStats(quota, window)

        p, t0, s0, c0 = self.begin(name)

        async def sender(i: int) -> None:
            c = self.clients[i]
            window = ms.windows[i]
            to = self.clients[partner[i]].jid
            head = f"<message to='{to}' type='chat' id='".encode()
            for seq in range(quota[i]):
                await window.acquire()
                if c.writer is None:
                    return
                c.send(head + f"{i}-{seq}'><body>{i}:{seq}:{time.perf_counter()!r}</body></message>".encode())
                ms.sent += 1

        ms.t_first_send = time.perf_counter()
        tasks = [asyncio.ensure_future(sender(i)) for i in live]
        deadline = time.perf_counter() + a.phase_timeout
        last_progress, last_count = time.perf_counter(), -1
        stalled = False
        while True:
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            count = ms.received + ms.errors
            if count >= total and all(t.done() for t in tasks):
                break
            if count != last_count:
                last_count, last_progress = count, now
            elif now - last_progress > a.stall_timeout:
                stalled = True
                break
            if now > deadline:
                stalled = True
                break
        for t in tasks:
            t.cancel()
        self.msg = None
        self.end(p, t0, s0, c0)
        span = (ms.t_last_recv or time.perf_counter()) - ms.t_first_send
        p.wall = span
        p.count = ms.received
        p.rate = ms.received / span if span > 0 else None
        p.lat_ms = ms.lat_ms
        p.failures = ms.errors + (ms.sent - ms.unique)
        p.notes.append(f"{len(live)} senders in {len(live) // 2} pairs, window {window}")
        p.notes.append(f"sent {ms.sent}, received {ms.received} (unique {ms.unique}), lost {ms.sent - ms.unique}, "
                       f"duplicates {ms.duplicates}, errors bounced {ms.errors}, unparsable {ms.bad}"
                       + (", STALLED" if stalled else ""))


class MessageStats:
    def __init__(self, quota: dict[int, int], window: int) -> None:
        self.quota = quota
        self.windows = {i: asyncio.Semaphore(window) for i in quota}
        self.seen = {i: bytearray(q) for i, q in quota.items()}
        self.sent = self.received = self.unique = self.duplicates = self.errors = self.bad = 0
        self.lat_ms: list[float] = []
        self.t_first_send = 0.0
        self.t_last_recv: float | None = None

    def received_stanza(self, receiver: int, el) -> None:
        now = time.perf_counter()
        if el.get("type") == "error":
            self.errors += 1
            w = self.windows.get(receiver)  # an error bounces back to the sender
            if w is not None:
                w.release()
            return
        body = el.findtext(T_BODY)
        try:
            i_s, seq_s, ts = body.split(":")  # type: ignore[union-attr]
            i, seq, t = int(i_s), int(seq_s), float(ts)
            seen = self.seen[i]
            first = not seen[seq]
        except (AttributeError, ValueError, KeyError, IndexError):
            self.bad += 1
            return
        self.received += 1
        self.t_last_recv = now
        if not first:
            self.duplicates += 1
            return
        seen[seq] = 1
        self.unique += 1
        self.lat_ms.append((now - t) * 1000)
        self.windows[i].release()


# -- output ---------------------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu": model, "python": platform.python_version(),
        "implementation": platform.python_implementation(), "platform": platform.platform(),
        "openssl": ssl.OPENSSL_VERSION,
    }


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def report(bench: Bench | None, info: dict) -> None:
    m = info["machine"]
    print()
    print(f"fedxmpp bench — {m['nproc']} CPU(s) [{m['cpu']}], {m['implementation']} {m['python']}, {m['openssl']}")
    a = info["params"]
    print(f"clients={a['clients']} messages={a['messages']} window={a['window']} "
          f"login-concurrency={a['concurrency']} sessions-for-memory={a['sessions_for_memory']} "
          f"scram_iterations={a['scram_iterations']} roster={a['roster']} "
          f"presence-updates={a['presence_updates']}  (client and server share the machine)")
    print(f"load average before the run: {info['loadavg_before']}; storage: {info['storage']}")
    prov = info["provision"]
    print(f"provisioning: {prov['accounts']} accounts with 'fedxmpp import-users' in {prov['seconds']:.2f} s "
          f"= {prov['accounts_per_s']:.1f} accounts/s; server ready in {info['server']['start_s']:.2f} s")
    print(f"client: {info['client']['tls']}; TCP_NODELAY on client sockets: {info['client']['nodelay']}; "
          f"SCRAM cache: {info['client']['scram_cache']}")
    if bench is None:
        return
    hdr = f"{'phase':<22}{'count':>7}{'wall s':>8}{'rate/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}" \
          f"{'srv CPU s':>10}{'cli CPU s':>10}{'oth CPU s':>10}{'fail':>6}"
    print()
    print(hdr)
    print("-" * len(hdr))
    for p in bench.phases:
        lat = p.lat_ms
        print(f"{p.name:<22}{p.count:>7}{p.wall:>8.2f}{fmt(p.rate):>9}{fmt(pct(lat, 50)):>9}{fmt(pct(lat, 99)):>9}"
              f"{fmt(max(lat) if lat else None):>9}{fmt(p.srv_cpu, '.2f'):>10}{fmt(p.cli_cpu, '.2f'):>10}"
              f"{fmt(p.other_cpu, '.2f'):>10}"
              f"{p.failures:>6}")
    for p in bench.phases:
        for note in p.notes:
            print(f"  {p.name}: {note}")
    for p in bench.phases:
        if p.name.startswith("messages") and p.count and p.srv_cpu is not None:
            line = f"  {p.name}: server CPU per message {p.srv_cpu / p.count * 1e6:.0f} µs (fedxmpp)"
            if p.db_cpu is not None:
                line += (f" + {p.db_cpu / p.count * 1e6:.0f} µs (PostgreSQL)"
                         f" = {(p.srv_cpu + p.db_cpu) / p.count * 1e6:.0f} µs")
            print(line)
    mem = bench.memory
    print()
    line = f"server RSS: start {mem['rss_start_kib'] / 1024:.1f} MiB, 0 sessions (after 1 warm-up login) " \
           f"{mem['rss_0_kib'] / 1024:.1f} MiB"
    for key in sorted((k for k in mem if k.startswith("rss_") and k[4:-4].isdigit() and k != "rss_0_kib"),
                      key=lambda k: int(k[4:-4])):
        line += f", {key[4:-4]} sessions {mem[key] / 1024:.1f} MiB"
    print(line)
    per = f"memory per session: {mem['per_session_kib_n']:.1f} KiB at {mem['sessions_n']} sessions"
    if "per_session_kib_s" in mem:
        per += f", {mem['per_session_kib_s']:.1f} KiB at {mem['sessions_s']} sessions"
    print(per + "   ((RSS_k - RSS_0) / k)")
    print(f"server RSS after all sessions closed {mem['rss_after_close_kib'] / 1024:.1f} MiB, "
          f"after messages {mem.get('rss_after_messages_kib', 0) / 1024:.1f} MiB")
    srv = info["server"]
    print(f"server: {srv['threads']} threads at the end; log: {srv['log_tracebacks']} tracebacks, "
          f"{srv['log_stream_errors']} stream errors; stopped by {srv['stop']} in {srv['stop_s']:.2f} s")


def log_counts(server: BenchServer) -> tuple[int, int]:
    try:
        text = server.log.read_text(errors="replace")
    except OSError:
        return 0, 0
    return text.count("Traceback (most recent call last)"), text.count("Stream error ")


async def amain(args: argparse.Namespace, server: BenchServer, info: dict,
                db_cpu: Callable[[], float] | None = None) -> Bench:
    bench = Bench(args, server)
    bench.db_cpu = db_cpu
    try:
        await bench.run()
    finally:
        # Whatever happened, close what is still open (bounded).
        if bench.clients:
            await asyncio.wait_for(bench.close_many(list(bench.clients)), 15)
    info["client"]["nodelay"] = ", ".join(sorted(str(x) for x in bench.nodelay)) or "?"
    info["client"]["tls"] = ", ".join(sorted(bench.tls_versions)) or "?"
    info["client"]["scram_cache"] = (
        f"SaltedPassword + ClientKey/StoredKey/ServerKey per (user, salt, i); "
        f"{bench.scram.derivations} PBKDF2 derivations ({bench.scram.derive_seconds:.2f} s client CPU), "
        f"{bench.scram.hits} logins reused the cache")
    return bench


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200, help="concurrent clients / sessions (default 200)")
    ap.add_argument("--messages", type=int, default=20000, help="messages routed in total (default 20000)")
    ap.add_argument("--window", type=int, default=10, help="unreceived messages in flight per sender (default 10)")
    ap.add_argument("--concurrency", type=int, default=50, help="logins in flight at once (default 50)")
    ap.add_argument("--sessions-for-memory", type=int, default=500,
                    help="also measure RSS with this many sessions, if more than --clients (default 500)")
    ap.add_argument("--scram-iterations", type=int, default=4096, help="server's [auth] scram_iterations")
    ap.add_argument("--serial", type=int, default=20,
                    help="unloaded samples: this many logins one at a time, and 10x this many messages "
                         "with one pair and window 1 (default 20; 0 = skip)")
    ap.add_argument("--roster", type=int, default=20,
                    help="presence phases: contacts per user, rounded down to even (default 20; 0 = skip)")
    ap.add_argument("--presence-updates", type=int, default=5,
                    help="presence updates each client broadcasts in the presence phase (default 5)")
    ap.add_argument("--storage", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the server's storage: SQLite in its data directory (default), or a PostgreSQL "
                         "server of the run's own (initdb + pg_ctl, as tests/pgserver.py; its CPU is "
                         "reported in the srv CPU figures' 'db' column and per message)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (config, data, log)")
    ap.add_argument("--profile", metavar="FILE", type=Path,
                    help="run the server under cProfile and save its stats to FILE (read with pstats); "
                         "profiling slows the server, so the figures of such a run are not comparable")
    ap.add_argument("--login-timeout", type=float, default=30.0, help="seconds per login (default 30)")
    ap.add_argument("--phase-timeout", type=float, default=120.0, help="seconds per phase (default 120)")
    ap.add_argument("--stall-timeout", type=float, default=10.0,
                    help="end the message phase after this many seconds without progress (default 10)")
    args = ap.parse_args(argv)
    if args.clients < 2:
        ap.error("--clients must be at least 2")
    if args.window < 1 or args.concurrency < 1 or args.messages < 0:
        ap.error("--window, --concurrency must be positive, --messages not negative")
    args.users_total = max(args.clients, args.sessions_for_memory) + 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    need = args.users_total * 2 + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:  # the server inherits it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    venv = Path(sys.executable).parent
    if not (venv / "twistd").exists():
        venv = Path(__file__).resolve().parent.parent / ".venv" / "bin"
    postgres = None
    if args.storage == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests import pgserver

        print("starting PostgreSQL ...", flush=True)
        postgres = pgserver.start(durable=True)
    server = BenchServer(venv, scram_iterations=args.scram_iterations, keep=args.keep,
                         profile=args.profile.resolve() if args.profile else None,
                         storage_url=postgres.create_database("bench") if postgres is not None else None)
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    info: dict = {"machine": machine(), "loadavg_before": loadavg, "storage": args.storage, "params": {
        "clients": args.clients, "messages": args.messages, "window": args.window, "concurrency": args.concurrency,
        "sessions_for_memory": max(args.sessions_for_memory, args.clients), "scram_iterations": args.scram_iterations,
        "roster": args.roster, "presence_updates": args.presence_updates},
        "client": {"nodelay": "?", "tls": "?", "scram_cache": "?"}, "server": {}}
    bench: Bench | None = None
    rc = 0
    try:
        users = [(user_name(i), password(i)) for i in range(args.users_total)]
        print(f"provisioning {len(users)} accounts ...", flush=True)
        took = server.provision(users)
        info["provision"] = {"accounts": len(users), "seconds": round(took, 3),
                             "accounts_per_s": round(len(users) / took, 1)}
        print(f"starting server on 127.0.0.1:{server.port} ...", flush=True)
        info["server"]["start_s"] = round(server.start(), 3)
        info["server"]["pid"] = server.pid
        print("running phases ...", flush=True)
        try:
            bench = asyncio.run(amain(args, server, info, postgres.cpu_seconds if postgres is not None else None))
        finally:
            if server.proc is not None and server.proc.poll() is None:
                info["server"]["threads"] = server.threads()
                info["server"]["cpu_total_s"] = round(server.cpu_seconds(), 2)
    except (ServerError, XMPPError, OSError) as e:
        print(f"bench: {type(e).__name__}: {e}", file=sys.stderr)
        rc = 1
    finally:
        how, secs = server.stop()
        info["server"]["stop"], info["server"]["stop_s"] = how, round(secs, 2)
        tb, se = log_counts(server)
        info["server"]["log_tracebacks"], info["server"]["log_stream_errors"] = tb, se
        if tb or rc:
            print(server.tail(40), file=sys.stderr)
        if args.keep:
            print(f"kept {server.dir}")
        server.cleanup()
        if postgres is not None:
            postgres.stop()
    info["server"].setdefault("threads", "?")
    if "provision" in info and "start_s" in info["server"]:
        report(bench, info)
    if bench is not None:
        info["phases"] = {p.name: p.summary() for p in bench.phases}
        info["memory"] = {k: round(v, 1) for k, v in bench.memory.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
