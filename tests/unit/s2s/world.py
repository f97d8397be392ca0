"""Fakes for the federation unit tests: a recording router, a fake DNS, a fake
connector, and a scripted remote server on Twisted's StringTransport.

:func:`outgoing` takes the federation of the whole server (``app.build``).
:func:`context` deliberately builds only what both directions share: the
incoming tests drive one stream against a router of their own, with the
dialback secret fixed, and need nothing else of a server.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.names import dns, error as dns_error
from twisted.words.xish import domish

from fedxmpp import app, config
from fedxmpp.config import LimitsConfig, S2SConfig
from fedxmpp.router import Router
from fedxmpp.s2s.context import S2SContext
from fedxmpp.s2s.dialback import DialbackKeys
from fedxmpp.s2s.outgoing import Outgoing
from fedxmpp.s2s.resolver import ResolveError, S2SResolver, Target
from fedxmpp.tls import CertificateStore, PeerVerifier
from fedxmpp.xml.jid import JID
from tests.unit.storage.fakes import MemoryStorage

HOSTED = ("example.test", "other.test")
PEER_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
               "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
               "from='remote.test' id='{id}' version='1.0'>")
DIALBACK_FEATURES = ("<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
                     "</stream:features>")


class Delivered:
    """The router's local route: what reached our own users (bounces included)."""

    def __init__(self) -> None:
        self.stanzas: list[domish.Element] = []

    def __call__(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        self.stanzas.append(stanza)

    def errors(self) -> list[str]:
        out = []
        for s in self.stanzas:
            if s.getAttribute("type") == "error":
                err = next(c for c in s.elements() if c.name == "error")
                out.append(next(c.name for c in err.elements() if c.name != "text"))
        return out


class FakeDNS:
    """A twisted.names resolver answering from a dict: name -> list of payloads."""

    def __init__(self, records: dict[str, list[Any]] | None = None) -> None:
        self.records = records or {}
        self.queries: list[tuple[str, str]] = []

    def _answer(self, name: str, kind: int) -> defer.Deferred:
        self.queries.append((name, dns.QUERY_TYPES.get(kind, str(kind))))
        found = self.records.get(name)
        if found is None:
            return defer.fail(dns_error.DNSNameError(name))
        rrs = [dns.RRHeader(name.encode(), p.TYPE, dns.IN, 60, p) for p in found if p.TYPE == kind]
        return defer.succeed((rrs, [], []))

    def lookupService(self, name: str) -> defer.Deferred:
        return self._answer(name, dns.SRV)

    def lookupAddress(self, name: str) -> defer.Deferred:
        return self._answer(name, dns.A)

    def lookupIPV6Address(self, name: str) -> defer.Deferred:
        return self._answer(name, dns.AAAA)


class FakeResolver:
    """Stands in for S2SResolver: fixed targets (or an error), and connections the
    test completes by hand."""

    def __init__(self, targets: list[Target] | Exception) -> None:
        self._targets = targets
        self.routes: dict[str, Target] = {}
        self.connects: list[tuple[Target, Any, defer.Deferred]] = []

    async def targets(self, domain: str) -> list[Target]:
        if isinstance(self._targets, Exception):
            raise self._targets
        return list(self._targets)

    def connect(self, target: Target, factory: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.connects.append((target, factory, d))
        return d

    def complete(self, index: int = -1) -> tuple[Any, StringTransport]:
        """Connect the pending attempt *index* to a StringTransport; its protocol."""
        target, factory, d = self.connects[index]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport


def certificates(tmp_path: Path) -> CertificateStore:
    store = CertificateStore(tmp_path / "certs", HOSTED, self_signed=True)
    store.load()
    return store


def context(tmp_path: Path, clock: MemoryReactorClock | None = None, router: Router | None = None,
            **s2s: Any) -> S2SContext:
    cfg = dataclasses.replace(S2SConfig(), **{"require_encryption": False, **s2s})
    if router is None:
        router = Router(HOSTED)
        router.set_local(Delivered())
    return S2SContext(config=cfg, limits=LimitsConfig(), router=router, certificates=certificates(tmp_path),
                      verifier=PeerVerifier(None), keys=DialbackKeys(b"unit-test-secret"),
                      clock=clock or MemoryReactorClock())


def outgoing(tmp_path: Path, targets: list[Target] | Exception | None = None, **s2s: Any):
    """(outgoing, fake resolver, delivered, clock) for one test: the federation of
    the whole server (``app.build``) on fakes, the resolver a :class:`FakeResolver`,
    and what comes back for our own users recorded by :class:`Delivered` in
    place of local delivery."""
    cfg = config.load(None)
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, domains=HOSTED),
                              s2s=dataclasses.replace(cfg.s2s, **{"require_encryption": False, **s2s}))
    resolver = FakeResolver(targets if targets is not None else [Target("remote.test", 5269)])
    server = app.build(cfg, MemoryReactorClock(), storage=MemoryStorage(), certificates=certificates(tmp_path),
                       resolver=resolver)  # type: ignore[arg-type]
    delivered = Delivered()
    server.router.set_local(delivered)
    return server.s2s.outgoing, resolver, delivered, server.reactor


def message(frm: str, to: str, body: str) -> domish.Element:
    el = domish.Element(("jabber:client", "message"))
    el["from"], el["to"] = frm, to
    el.addElement("body", content=body)
    return el


def send(out: Outgoing, frm: str, to: str, body: str) -> None:
    out.ctx.router.route(message(frm, to, body), JID.parse(frm), JID.parse(to))


def written(transport: StringTransport) -> str:
    return transport.value().decode()


def bodies(text: str) -> list[str]:
    return re.findall(r"<body>([^<]*)</body>", text)


def unresolvable() -> ResolveError:
    return ResolveError("remote.test has neither SRV records nor addresses")


def real_resolver(fake: FakeDNS, clock: Any = None, **kw: Any) -> S2SResolver:
    return S2SResolver(clock or MemoryReactorClock(), fake, own_addresses=True, **kw)
