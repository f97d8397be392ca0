"""Small fakes shared by unit tests."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.words.xish import domish

from fedxmpp import app
from fedxmpp.config import Config
from fedxmpp.s2s.resolver import ResolveError, Target
from fedxmpp.stream.framing import WEBSOCKET
from fedxmpp.tls import CertificateStore
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID

#: Where the fake clocks of the unit worlds start (a plausible time of day).
NOW = 1_700_000_000.0


class FakeSession:
    """A bound client session that records what it is sent."""

    kind = "c2s"

    def __init__(self, jid: str, available: bool = True, priority: int = 0) -> None:
        full = JID.parse(jid)
        self.bare = full.bare
        self.address = full
        self.requested = full.resource
        self.available = available
        self.priority = priority
        self.presence: domish.Element | None = None
        self.replaced = False
        self.sent: list[domish.Element] = []
        self.closed_with: list[StreamError | None] = []
        self.receipts: list[Deferred[bool]] | None = None
        #: When a list: ready() waits, each call adding a Deferred here to fire.
        self.gate: list[Deferred[bool]] | None = None

    def send(self, stanza: domish.Element) -> None:
        self.sent.append(stanza)

    def send_tracked(self, stanza: domish.Element) -> Deferred[bool]:
        """Delivered at once, unless a test set :attr:`receipts` to a list, which
        then collects the receipts for the test to settle."""
        self.sent.append(stanza)
        if self.receipts is None:
            return succeed(True)
        receipt: Deferred[bool] = Deferred()
        self.receipts.append(receipt)
        return receipt

    def ready(self) -> Deferred[bool]:
        if self.gate is None:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        self.gate.append(d)
        return d

    def close(self, error: StreamError | None = None) -> None:
        self.closed_with.append(error)


def stanza(name: str, frm: str, to: str, type: str | None = None, payload_ns: str | None = None,
           id: str | None = "s1") -> domish.Element:
    el = domish.Element(("jabber:client", name))
    el["from"] = frm
    el["to"] = to
    if type:
        el["type"] = type
    if id and name == "iq":
        el["id"] = id
    if payload_ns:
        el.addElement((payload_ns, "query"))
    if name == "message":
        el.addElement("body", content="hi")
    return el


class NoDNS:
    """A federation resolver that finds no remote server: stanzas for remote
    domains end as the outgoing queue's bounces, and no socket is ever opened."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def targets(self, domain: str) -> list[Target]:
        self.asked.append(domain)
        raise ResolveError(f"{domain} has neither SRV records nor addresses (unit test)")

    def connect(self, target: Target, factory: Any) -> Deferred[Any]:
        raise AssertionError("a unit test must not connect to a remote server")


def build_server(cfg: Config, *, storage: Any, clock: MemoryReactorClock | None = None,
                 resolver: Any = None) -> app.FedXmpp:
    """The whole server for *cfg* as twistd composes it (:func:`fedxmpp.app.build`),
    on fakes: *storage* (in memory), a MemoryReactorClock at :data:`NOW`, a
    certificate store that is never loaded (these tests do not negotiate TLS) and
    a resolver that finds nothing unless one is given.  It is not started: no
    listener, no admin socket."""
    if clock is None:
        clock = MemoryReactorClock()
        clock.advance(NOW)
    certificates = CertificateStore(cfg.tls.certificates, cfg.server.domains, self_signed=False)
    return app.build(cfg, clock, storage=storage, certificates=certificates,
                     resolver=resolver if resolver is not None else NoDNS())


class MessageLink(StringTransport):
    """A message transport on a StringTransport: each write is one message,
    kept in :attr:`messages`; and the stream's link (secure, no STARTTLS)."""

    framing = WEBSOCKET
    secure = True
    bindings: dict[str, bytes] = {}
    starttls_offered = False
    peer_host = "192.0.2.1"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def write(self, data: bytes) -> None:
        self.messages.append(data.decode())
        super().write(data)

    def attach(self, transport: Any) -> None:
        assert transport is self

    def start_tls(self, context_factory: Any) -> None:
        raise AssertionError("no STARTTLS over WebSocket")

    def channel_bindings(self) -> dict[str, bytes]:
        return dict(self.bindings)

    def peer_address(self) -> str:
        return "192.0.2.1:4000"

    def tls_version(self) -> str | None:
        return "yes"
