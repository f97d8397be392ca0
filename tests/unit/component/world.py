"""A server without sockets for the component tests: the whole server as
``app.build`` composes it, components configured, on fakes."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from fedxmpp.component.handshake import handshake_digest
from fedxmpp.config import ComponentConfig, ComponentsConfig, Config, PrivilegesConfig, ServerConfig
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from fedxmpp.xml.parser import StreamParser
from tests.unit.fakes import FakeSession, build_server
from tests.unit.storage.fakes import MemoryStorage

SECRET = "gw-secret"
HOSTED = ("example.test", "other.test")


def component(domain: str, **kw: Any) -> ComponentConfig:
    privileges = kw.pop("privileges", None)
    return ComponentConfig(domain=domain, secret=kw.pop("secret", SECRET),
                           privileges=PrivilegesConfig(**(privileges or {})), **kw)


class World:
    """The whole server (``app.build``) on fakes, with *components* configured.

    When the test gives a *roster*, it is what XEP-0356 requests reach (a fake
    that records the calls, or None for a server without a roster service), in
    place of the IM core's roster.
    """

    def __init__(self, *components: ComponentConfig, roster: Any = None, handshake_timeout: float = 30.0) -> None:
        self.config = Config(server=ServerConfig(domains=HOSTED),
                             components=ComponentsConfig(component=components or (component("gw.example.test"),),
                                                         handshake_timeout=handshake_timeout))
        self.server = build_server(self.config, storage=MemoryStorage())
        self.clock = self.server.reactor
        self.hooks = self.server.hooks
        self.router = self.server.router
        self.sessions = self.server.sessions
        self.roster = roster
        self.components = self.server.components
        self.components.privileges.roster = lambda: self.roster
        self.factory = self.server.component_factory

    def login(self, jid: str) -> FakeSession:
        s = FakeSession(jid)
        self.sessions.bind(s, s.requested)
        return s

    def route(self, el: domish.Element) -> None:
        self.router.route(el, JID.parse(el["from"]), JID.parse(el["to"]))

    def connect(self, domain: str | None = "gw.example.test") -> Peer:
        peer = Peer(self.factory.buildProtocol(None))
        if domain is not None:
            peer.open(domain)
        return peer

    def attach(self, domain: str = "gw.example.test", secret: str = SECRET) -> Peer:
        peer = self.connect(domain)
        peer.handshake(secret)
        assert peer.take().startswith("<handshake/>"), "the handshake should have succeeded"
        return peer


class Peer:
    """The component's end of a stream: what it sends, and the elements it received."""

    def __init__(self, stream: ServerStream) -> None:
        self.stream = stream
        self.transport = StringTransport()
        stream.makeConnection(self.transport)
        self.stream_id = ""

    def open(self, domain: str, version: str | None = None) -> str:
        v = f" version='{version}'" if version else ""
        self.feed(f"<stream:stream xmlns='{ns.COMPONENT}' xmlns:stream='{ns.STREAMS}' to='{domain}'{v}>")
        header = self.take()
        match = re.search(r"id='([^']+)'", header)
        self.stream_id = match.group(1) if match else ""
        return header

    def handshake(self, secret: str = SECRET) -> None:
        self.feed(f"<handshake>{handshake_digest(self.stream_id, secret)}</handshake>")

    def feed(self, text: str) -> None:
        self.stream.dataReceived(text.encode())

    def take(self) -> str:
        out = self.transport.value().decode()
        self.transport.clear()
        return out

    def elements(self, text: str | None = None) -> list[domish.Element]:
        """The elements the server sent since the last call (or in *text*), parsed."""
        text = self.take() if text is None else text
        if not text.startswith("<?xml"):
            text = f"<stream:stream xmlns='{ns.COMPONENT}' xmlns:stream='{ns.STREAMS}'>" + text
        got: list[domish.Element] = []
        parser = StreamParser(on_stream_start=lambda root: None, on_element=got.append, on_stream_end=lambda: None,
                              max_stanza_size=1_000_000, max_depth=100)
        parser.feed(text.encode())
        return got

    @property
    def closed(self) -> bool:
        return self.stream.closed


def stream_error(elements: list[domish.Element]) -> str | None:
    for el in elements:
        if el.name == "error" and el.uri == ns.STREAMS:
            return next(c.name for c in el.elements() if c.name != "text")
    return None


def stanza_error(el: domish.Element) -> str | None:
    if el.getAttribute("type") != "error":
        return None
    err = next(c for c in el.elements() if c.name == "error")
    return next(c.name for c in err.elements() if c.uri == ns.STANZA_ERRORS and c.name != "text")
