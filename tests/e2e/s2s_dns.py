"""A test DNS server for the federation tests: twisted.names serving one JSON zone.

Run as a subprocess (``python -m tests.e2e.s2s_dns ZONE.json``): it listens on
127.0.0.1, UDP and TCP on the same port, and prints ``ready PORT`` once it does.
The zone file maps names to records::

    {"_xmpp-server._tcp.a.test": [["SRV", 0, 5, 15222, "xmpp.a.test"]],
     "xmpp.a.test": [["A", "127.0.0.2"]]}

Every name ends in ``.test``; anything else under ``test`` is NXDOMAIN.
:class:`ZoneServer` starts and stops it (by PID, bounded waits).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT = 15.0


def _records(spec: dict[str, list[list[Any]]]) -> dict[bytes, list[Any]]:
    from twisted.names import dns

    out: dict[bytes, list[Any]] = {}
    for name, entries in spec.items():
        recs = out.setdefault(name.lower().encode(), [])
        for entry in entries:
            kind, *args = entry
            if kind == "SRV":
                priority, weight, port, target = args
                recs.append(dns.Record_SRV(priority, weight, port, b"" if target == "." else target, ttl=5))
            elif kind == "A":
                recs.append(dns.Record_A(args[0], ttl=5))
            elif kind == "AAAA":
                recs.append(dns.Record_AAAA(args[0], ttl=5))
            else:
                raise ValueError(f"unknown record type {kind}")
    return out


def serve(zone_path: str) -> None:
    from twisted.internet import defer, reactor
    from twisted.names import authority, dns, server

    spec = json.loads(Path(zone_path).read_text())

    class ZoneAuthority(authority.FileAuthority):
        def loadFile(self, filename: str) -> None:
            self.soa = (b"test", dns.Record_SOA(mname=b"ns.test", rname=b"root.test", serial=1, refresh=60,
                                                retry=60, expire=60, minimum=5, ttl=5))
            self.records = _records(spec)
            self.records.setdefault(b"test", []).append(self.soa[1])

        def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:
            # A name with nothing of its own but names below it (an "empty
            # non-terminal", e.g. fed.test under _xmpp-server._tcp.fed.test) exists:
            # NODATA, not NXDOMAIN, or resolvers doing QNAME minimisation (unbound,
            # hence Prosody) conclude that nothing below it exists (RFC 8020).
            key = name.lower()
            if not self.records.get(key) and any(k.endswith(b"." + key) for k in self.records):
                soa = dns.RRHeader(self.soa[0], dns.SOA, dns.IN, 5, self.soa[1], auth=True)
                return defer.succeed(([], [soa], []))
            return super()._lookup(name, cls, type, timeout)

    class ZoneServerFactory(server.DNSServerFactory):
        def _responseFromMessage(self, message: dns.Message, **kwargs: Any) -> dns.Message:
            # RFC 1035 §4.1.1: RD is copied into the response.  twisted.names leaves it
            # unset, and Erlang's resolver (hence ejabberd) drops such answers.
            response = super()._responseFromMessage(message, **kwargs)
            response.recDes = message.recDes
            return response

    factory = ZoneServerFactory(authorities=[ZoneAuthority(zone_path)])
    for _ in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        port = udp.getHost().port
        try:
            reactor.listenTCP(port, factory, interface="127.0.0.1")
        except Exception:
            udp.stopListening()
            continue
        break
    else:
        raise SystemExit("no port free for both UDP and TCP")
    print(f"ready {port}", flush=True)
    reactor.run()


class ZoneServer:
    """The DNS server subprocess for one zone."""

    def __init__(self, root: Path, zone: dict[str, list[list[Any]]]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.zone_path = root / "zone.json"
        self.zone_path.write_text(json.dumps(zone))
        self.log_path = root / "dns.log"
        self._err = open(self.log_path, "wb")
        repo = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.s2s_dns", str(self.zone_path)],
                                     cwd=repo, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
                                     text=True)
        self.port = self._wait_ready()

    def _wait_ready(self) -> int:
        import select

        deadline = time.monotonic() + READY_TIMEOUT
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("ready "):
                    return int(line.split()[1])
        self.stop()
        raise AssertionError(f"the test DNS server did not start: {self.log_path.read_text(errors='replace')}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()


if __name__ == "__main__":
    serve(sys.argv[1])
