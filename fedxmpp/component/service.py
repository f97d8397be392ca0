"""The component listener: one component stream per connection."""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol

from fedxmpp.component.context import Components
from fedxmpp.component.handshake import ComponentStreamHandler
from fedxmpp.stream.shaper import shaper
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.xml import ns


class ComponentFactory(Factory):
    """Builds a component :class:`ServerStream` per connection and remembers the live
    ones so that shutdown can close them with ``<system-shutdown/>``."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.streams: set[ServerStream] = set()

    def buildProtocol(self, addr: Any) -> Protocol:
        cfg = self.components.config
        stream = ServerStream(ComponentStreamHandler(self.components), content_ns=ns.COMPONENT, limits=cfg.limits,
                              clock=self.components.clock,
                              negotiation_timeout=cfg.components.handshake_timeout,
                              idle_timeout=cfg.components.idle_timeout,
                              keepalive_interval=cfg.components.keepalive_interval,
                              on_lost=self.streams.discard, versioned=False,
                              shaper=shaper(cfg.limits.component_rate, cfg.limits.component_burst,
                                            self.components.clock))
        stream.factory = self
        self.streams.add(stream)
        return stream
