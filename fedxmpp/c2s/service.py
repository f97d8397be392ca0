"""The client-to-server listeners: STARTTLS ports and XEP-0368 direct TLS ports."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from fedxmpp.c2s.context import C2SContext
from fedxmpp.c2s.negotiation import ClientStreamHandler
from fedxmpp.stream.admission import Admission, Refused
from fedxmpp.stream.shaper import shaper
from fedxmpp.stream.transport import StreamLink, TcpLink
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.tls import CertificateStore, channel_bindings
from fedxmpp.xml import ns


class C2SFactory(Factory):
    """Builds a :class:`ServerStream` with a client handler per connection and
    remembers the live ones so that shutdown can close them cleanly."""

    def __init__(self, ctx: C2SContext) -> None:
        self.ctx = ctx
        self.streams: set[ServerStream] = set()
        self.admission = Admission(ctx.clock, "client")

    def buildProtocol(self, addr: Any) -> Protocol:
        admitted = self.admission.admit(getattr(addr, "host", ""), self.ctx.config.limits)
        if admitted is None:
            return Refused()
        return self.client_stream(TcpLink(channel_bindings), on_end=lambda: self.admission.release(admitted))

    def client_stream(self, link: StreamLink, on_end: Callable[[], None] | None = None) -> ServerStream:
        """A client stream over *link*: TCP here, WebSocket or BOSH from the HTTP
        listener.  The caller connects it (``stream.makeConnection``); *on_end*
        runs when its connection is lost."""
        c2s, limits = self.ctx.config.c2s, self.ctx.config.limits

        def lost(stream: ServerStream) -> None:
            self.streams.discard(stream)
            if on_end is not None:
                on_end()

        stream = ServerStream(ClientStreamHandler(self.ctx), content_ns=ns.CLIENT, limits=limits,
                              clock=self.ctx.clock, negotiation_timeout=c2s.auth_timeout,
                              idle_timeout=c2s.idle_timeout, keepalive_interval=c2s.keepalive_interval,
                              on_lost=lost,
                              shaper=shaper(limits.c2s_rate, limits.c2s_burst, self.ctx.clock), backpressure=True,
                              link=link)
        stream.factory = self
        self.streams.add(stream)
        return stream


def direct_tls_factory(factory: C2SFactory, certificates: CertificateStore) -> TLSMemoryBIOFactory:
    """Wrap *factory* in TLS from the first byte (XEP-0368), ALPN 'xmpp-client'."""
    return TLSMemoryBIOFactory(certificates.server_creator(alpn=[b"xmpp-client"]), False, factory)
