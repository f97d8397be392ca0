"""The admin socket's status, connected and kick answers, on a server built
through app.build with a fake reactor and fake client sessions."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from fedxmpp import app, config
from fedxmpp.admin.server import PAGE_BYTES, AdminProtocol
from fedxmpp.stream.transport import TcpLink
from fedxmpp.xml.jid import JID


class FakeStream:
    def __init__(self, port: int) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", port))
        self.link = TcpLink()
        self.link.attach(self.transport)
        self.close_reason: str | None = None
        self.errors: list[tuple[str, str | None]] = []


class FakeSession:
    kind = "c2s"

    def __init__(self, bare: JID, port: int) -> None:
        self.bare = self.address = bare
        self.available = False
        self.priority = 0
        self.presence = None
        self.replaced = False
        self.sm = None
        self.stream = FakeStream(port)

    def send(self, stanza: object) -> None:
        pass

    def close(self, error: object = None) -> None:
        self.stream.close_reason = error.condition  # type: ignore[attr-defined]
        self.stream.errors.append((error.condition, error.text))  # type: ignore[attr-defined]


def server(tmp_path: Path) -> app.FedXmpp:
    path = tmp_path / "fedxmpp.toml"
    path.write_text('[server]\ndomains = ["example.test"]\ndata_dir = "data"\n[auth]\nscram_iterations = 4096\n')
    return app.build(config.load(path), MemoryReactorClock())


def bind(srv: app.FedXmpp, jid: str, resource: str, port: int) -> FakeSession:
    session = FakeSession(JID.parse(jid), port)
    srv.sessions.bind(session, resource)
    srv.hooks.fire("c2s/session-bound", session)
    return session


def test_status_counts_and_uptime(tmp_path):
    """Uptime runs on the server's clock; bound sessions are counted as c2s."""
    srv = server(tmp_path)
    srv.reactor.advance(3725)
    bind(srv, "ann@example.test", "a", 1000)
    bind(srv, "ann@example.test", "b", 1001)
    answer = AdminProtocol(srv).status()
    assert answer["uptime"] == 3725 and answer["c2s"] == 2 and answer["hibernating"] == 0
    assert answer["s2s_in"] == answer["s2s_out"] == answer["components"] == 0


def test_connected_pages_fit_in_an_amp_value(tmp_path):
    """Thousands of sessions with long resources come back over several pages, each
    under AMP's 64 KiB value limit, together listing every session once, in order."""
    srv = server(tmp_path)
    for n in range(1500):
        bind(srv, f"user{n:04d}@example.test", "r" * 100, 2000 + n)
    protocol = AdminProtocol(srv)
    seen, start, pages = [], 0, 0
    while start >= 0:
        answer = protocol.connected_sessions(start)
        assert len(answer["sessions"].encode()) <= PAGE_BYTES < 65535
        seen.extend(json.loads(answer["sessions"]))
        start, pages = answer["next"], pages + 1
    assert pages > 2
    assert [s["jid"] for s in seen] == [f"user{n:04d}@example.test/{'r' * 100}" for n in range(1500)]
    assert seen[0]["address"] == "192.0.2.7:2000" and seen[0]["tls"] == "no" and seen[0]["sm"] == "off"


def test_kick_full_and_bare_jids(tmp_path):
    """A full JID ends one session, a bare JID all of the account's, with
    <policy-violation/>; a session already ending is not counted again."""
    srv = server(tmp_path)
    desk = bind(srv, "ann@example.test", "desk", 1)
    phone = bind(srv, "ann@example.test", "phone", 2)
    other = bind(srv, "ben@example.test", "desk", 3)
    protocol = AdminProtocol(srv)
    assert protocol.kick("ann@example.test/desk") == {"sessions": 1}
    assert desk.stream.errors == [("policy-violation", "Disconnected by the server administrator")]
    assert protocol.kick("ann@example.test", "bye") == {"sessions": 1}
    assert phone.stream.errors == [("policy-violation", "bye")]
    assert other.stream.errors == []
