"""Federated worlds for the S2S end-to-end tests: several real ``twistd fedxmpp``
processes on their own loopback addresses, a test CA, and a test DNS server whose
SRV records point at non-default ports (a server that ignored SRV would fail).
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import STREAMS, HarnessError, RawClient, Received, ServerProcess, _Transport
from tests.e2e.s2s_dns import ZoneServer
from tests.e2e.s2s_pki import CertAuthority

DB = "jabber:server:dialback"
SERVER = "jabber:server"

# Short enough that failure tests end quickly, long enough for a loaded CI machine.
S2S_TIMEOUTS = {"connect_timeout": 5.0, "auth_timeout": 10.0, "send_timeout": 20.0}


def free_port_on(host: str) -> int:
    """A TCP port free on *host* (a loopback address) a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def address_with_free_5269(preferred: str) -> str:
    """A loopback address on which the default S2S port 5269 is free: *preferred*
    if possible, else a random 127.x.y.z (other test runs may hold it meanwhile)."""
    candidates = [preferred] + [f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"
                                for _ in range(20)]
    for host in candidates:
        if port_free(host, 5269):
            return host
    raise HarnessError("no loopback address with port 5269 free (is a system XMPP server listening on *:5269?)")


@dataclass
class Peer:
    """One fedxmpp process of the world, before and after it starts."""

    name: str
    address: str
    domains: list[str]
    users: dict[str, str]
    ca_domains: list[str] = field(default_factory=list)  # certificates from the test CA
    server_auth_only: bool = False
    s2s: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    direct_port: int = 0
    extra_listen: list[str] = field(default_factory=list)
    # More configuration sections, e.g. {"components": {...}}.
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: ServerProcess | None = None

    def __post_init__(self) -> None:
        self.port = free_port_on(self.address)


def start_peer(root: Path, peer: Peer, ca: CertAuthority, dns: ZoneServer) -> ServerProcess:
    listen = [f"tcp:{peer.port}:interface={peer.address}"] + peer.extra_listen
    direct = [f"tcp:{peer.direct_port}:interface={peer.address}"] if peer.direct_port else []
    s2s = {"listen": listen, "direct_tls": direct, "nameservers": [dns.address], "ca_file": str(ca.path),
           **S2S_TIMEOUTS, **peer.s2s}
    server = ServerProcess(root / peer.name, overrides={
        "server": {"domains": peer.domains},
        "tls": {"self_signed": True},
        "s2s": s2s,
        **peer.config,
    })
    certs = server.data_dir / "certs"
    for domain in peer.ca_domains:
        ca.issue(domain, certs, server_auth_only=peer.server_auth_only)
    server.import_users(peer.users)
    server.start()
    try:
        server.wait_log(r"Listening for servers", timeout=10)
    except HarnessError:
        server.kill()
        raise
    peer.server = server
    return server


class ServerRawClient(RawClient):
    """A raw stream in jabber:server from *claim* to *domain* at host:port that
    declares the dialback prefix: for sending what no real server sends."""

    def __init__(self, port: int, cafile: Path, *, host: str, domain: str, claim: str) -> None:
        self.claim = claim
        self.cafile = cafile
        self.domain = domain
        self.use_pyopenssl = False
        self.max_tls = None
        self.t = _Transport(socket.create_connection((host, port), timeout=10))
        self.tls_version = None
        self.jid = None
        self._pending = []
        self.received = Received()
        self._new_parser()

    def header(self, to: str | None = None, **kw: Any) -> str:
        return (f"<?xml version='1.0'?><stream:stream to='{to or self.domain}' from='{self.claim}' "
                f"xmlns='{SERVER}' xmlns:stream='{STREAMS}' xmlns:db='{DB}' version='1.0'>")
