"""fedxmpp group chat benchmark: one room, R occupants, M messages/s into it.

Usage (from the repository root)::

    .venv/bin/python bench/room.py [--occupants 100] [--rate 20] [--seconds 5] [--json FILE]

It starts its own server (as ``bench/run.py`` does, plus ``[muc] domain =
"conference.bench.test"`` with the per-occupant rate limit raised out of the
way), logs R clients in, makes them join one room, then:

1. *join*: the presence broadcast of R joins (R² presence stanzas in all),
   reported as presence deliveries/s;
2. *room*: --senders occupants send --rate groupchat messages/s in total for
   --seconds seconds; every occupant receives each one (R deliveries per
   message).  Reported: deliveries/s, server CPU µs per delivery (utime + stime
   of twistd over the phase / deliveries) and the latency of a delivery (the
   sender's ``perf_counter`` in the body, read by the receiver) p50/p99;
3. *1:1*: the same clients in pairs send each other the same number of
   deliveries as chat messages at the same delivery rate: the 1:1 figures to
   compare with.

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serverproc import DOMAIN, BenchServer, venv_bin  # noqa: E402
from xmppload import T_BODY, T_MESSAGE, T_PRESENCE, Client, ScramCache, make_ssl_context  # noqa: E402

HOST = "127.0.0.1"
SERVICE = f"conference.{DOMAIN}"
ROOM = f"bench@{SERVICE}"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class RoomBench:
    def __init__(self, args: argparse.Namespace, server: BenchServer) -> None:
        self.args = args
        self.server = server
        self.scram = ScramCache()
        self.ssl_context = make_ssl_context(str(server.cert_file))
        self.clients: list[Client] = []
        self.presences = 0
        self.joined: set[int] = set()
        self.received = 0
        self.latencies: list[float] = []

    def handler(self, i: int):
        def on_stanza(el) -> None:
            if el.tag == T_MESSAGE:
                body = el.find(T_BODY)
                if body is not None and body.text and body.text.startswith("t="):
                    self.received += 1
                    self.latencies.append((time.perf_counter() - float(body.text[2:])) * 1000)
            elif el.tag == T_PRESENCE:
                self.presences += 1
                if el.get("from") == f"{ROOM}/o{i}" and el.get("type") is None:
                    self.joined.add(i)
        return on_stanza

    async def login_all(self) -> None:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> Client:
            async with sem:
                c = Client(HOST, self.server.port, DOMAIN, f"u{i}", f"pw{i}", ssl_context=self.ssl_context,
                           scram=self.scram, on_stanza=self.handler(i))
                await asyncio.wait_for(c.login(), 120)
                c.start_reading()
                return c

        self.clients = list(await asyncio.gather(*(one(i) for i in range(self.args.occupants))))

    async def until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def join(self) -> dict:
        owner = self.clients[0]
        owner.send(f"<presence to='{ROOM}/o0'><x xmlns='http://jabber.org/protocol/muc'/></presence>".encode())
        await self.until(lambda: 0 in self.joined, 30)
        owner.send(f"<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                   "<x xmlns='jabber:x:data' type='submit'/></query></iq>".encode())
        await asyncio.sleep(0.2)
        self.presences = 0
        cpu0, t0 = self.server.cpu_seconds(), time.perf_counter()
        for i, c in enumerate(self.clients[1:], start=1):
            c.send(f"<presence to='{ROOM}/o{i}'><x xmlns='http://jabber.org/protocol/muc'>"
                   "<history maxstanzas='0'/></x></presence>".encode())
        r = len(self.clients)
        # The k-th joiner gets k presences of those before it and its own; they get its presence.
        expected = r * r - 1
        ok = await self.until(lambda: len(self.joined) == r and self.presences >= expected, 600)
        wall, cpu = time.perf_counter() - t0, self.server.cpu_seconds() - cpu0
        return {"phase": "join", "occupants": r, "presences": self.presences, "complete": ok,
                "presences_per_s": round(self.presences / wall), "cpu_us_per_presence": round(cpu / max(1, self.presences) * 1e6, 1)}

    async def send_at_rate(self, messages: list[tuple[Client, bytes]], rate: float) -> None:
        t0 = time.perf_counter()
        for n, (client, template) in enumerate(messages):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            client.send(template.replace(b"STAMP", f"t={time.perf_counter():.6f}".encode()))

    async def measure(self, name: str, messages: list[tuple[Client, bytes]], rate: float, fanout: int) -> dict:
        self.received, self.latencies = 0, []
        expected = len(messages) * fanout
        cpu0, t0 = self.server.cpu_seconds(), time.perf_counter()
        await self.send_at_rate(messages, rate)
        ok = await self.until(lambda: self.received >= expected, 120)
        wall, cpu = time.perf_counter() - t0, self.server.cpu_seconds() - cpu0
        return {"phase": name, "messages": len(messages), "deliveries": self.received, "complete": ok,
                "deliveries_per_s": round(self.received / wall), "cpu_us_per_delivery":
                round(cpu / max(1, self.received) * 1e6, 1), "latency_ms_p50": _r(pct(self.latencies, 0.5)),
                "latency_ms_p99": _r(pct(self.latencies, 0.99))}

    async def run(self) -> list[dict]:
        a = self.args
        await self.login_all()
        results = [await self.join()]
        senders = self.clients[:a.senders]
        count = int(a.rate * a.seconds)
        room = [(senders[n % len(senders)],
                 f"<message to='{ROOM}' type='groupchat'><body>STAMP</body></message>".encode()) for n in range(count)]
        results.append(await self.measure("room", room, a.rate, len(self.clients)))
        # As many 1:1 deliveries, at the same delivery rate, between pairs of the same clients.
        deliveries = count * len(self.clients)
        pairs = [(self.clients[n % len(self.clients)],
                  f"<message to='u{(n % len(self.clients)) ^ 1}@{DOMAIN}/bench' type='chat'><body>STAMP</body>"
                  "</message>".encode()) for n in range(deliveries)]
        results.append(await self.measure("1:1", pairs, a.rate * len(self.clients), 1))
        for c in self.clients:
            await c.close(1.0)
        return results


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--occupants", type=int, default=100, help="occupants of the room (even; default 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s sent into the room (default 20)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the message phase (default 5)")
    parser.add_argument("--senders", type=int, default=10, help="occupants that send (default 10)")
    parser.add_argument("--no-archive", action="store_true", help="rooms without archive ([muc] archive_length = 0)")
    parser.add_argument("--json", type=Path, help="write the figures there too")
    parser.add_argument("--keep", action="store_true", help="keep the server's directory and log")
    args = parser.parse_args()
    if args.occupants < 2 or args.occupants % 2:
        parser.error("--occupants must be even and at least 2 (the 1:1 phase pairs them)")
    args.senders = min(args.senders, args.occupants)
    server = BenchServer(venv_bin(), keep=args.keep)
    with open(server.config, "a") as f:
        f.write(f'\n[muc]\ndomain = "{SERVICE}"\nmax_occupants = {max(200, args.occupants)}\n'
                f'occupant_rate = 100000.0\noccupant_burst = 100000\nhistory_length = 0\n'
                f'archive_length = {0 if args.no_archive else 10000}\n')
    try:
        server.provision([(f"u{i}", f"pw{i}") for i in range(args.occupants)])
        server.start()
        results = asyncio.run(RoomBench(args, server).run())
    finally:
        server.stop()
        server.cleanup()
    for row in results:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
