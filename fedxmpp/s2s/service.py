"""Federation as the application sees it: built from the config, started, stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from fedxmpp.config import Config, with_backlog
from fedxmpp.router import Router
from fedxmpp.s2s.context import S2SContext
from fedxmpp.s2s.dialback import DialbackKeys
from fedxmpp.s2s.incoming import IncomingFactory, direct_tls_factory
from fedxmpp.s2s.outgoing import Outgoing
from fedxmpp.s2s.resolver import S2SResolver
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.tls import CertificateStore, PeerVerifier
from fedxmpp.xml.errors import StreamError

log = Logger()


class ListenError(Exception):
    """A listener could not be opened; the message names the key and the address."""


class Federation:
    """Outgoing route, incoming listeners and what they share."""

    def __init__(self, config: Config, router: Router, certificates: CertificateStore, reactor: Any, *,
                 resolver: S2SResolver | None = None, verifier: PeerVerifier | None = None) -> None:
        cfg = config.s2s
        self.config = cfg
        self.backlog = config.server.listen_backlog
        self.reactor = reactor
        if verifier is None:
            verifier = PeerVerifier(cfg.ca_file if cfg.ca_file != Path() else None)
        self.ctx = S2SContext(config=cfg, limits=config.limits, router=router, certificates=certificates,
                              verifier=verifier, keys=DialbackKeys(), clock=reactor)
        if resolver is None:
            resolver = S2SResolver.from_config(reactor, nameservers=cfg.nameservers, routes=cfg.routes,
                                               connect_timeout=cfg.connect_timeout)
        self.outgoing = Outgoing(self.ctx, resolver)
        self.incoming = IncomingFactory(self.ctx, self.outgoing)
        self.ports: list[Any] = []

    async def listen(self) -> None:
        for key, factory in (("listen", self.incoming), ("direct_tls", direct_tls_factory(self.incoming))):
            for description in getattr(self.config, key):
                try:
                    port = await serverFromString(self.reactor, with_backlog(description, self.backlog)).listen(factory)
                except CannotListenError as e:
                    raise ListenError(f"s2s.{key}: cannot listen on {description!r}: {e.socketError}") from None
                self.ports.append(port)
                log.info("Listening for servers ({kind}) on {address}",
                         kind="STARTTLS" if key == "listen" else "direct TLS", address=port.getHost())

    async def stop_listening(self) -> None:
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        self.ports.clear()

    @property
    def streams(self) -> list[Any]:
        """Every live stream, both directions."""
        incoming: list[ServerStream] = list(self.incoming.streams)
        return incoming + list(self.outgoing.streams)

    def shutdown(self) -> None:
        """Close every stream with ``<system-shutdown/>``; queued stanzas are dropped."""
        error = StreamError("system-shutdown", "The server is shutting down")
        for stream in list(self.incoming.streams):
            stream.fail(error)
        self.outgoing.close_all(error)

    def abort(self) -> None:
        for stream in self.streams:
            if stream.transport is not None:
                stream.transport.abortConnection()
