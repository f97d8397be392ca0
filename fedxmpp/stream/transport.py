"""What a stream needs from the connection under it, whatever carries it.

Two faces:

* :class:`IStreamTransport`, the bytes: Twisted's transport methods (write,
  loseConnection, abortConnection, pause/resumeProducing, registerProducer).
  Twisted's TCP and TLS transports provide them; a WebSocket or BOSH session
  provides the same names over its own connection.  A protocol declares
  ``transport: IStreamTransport`` for the type checker.
* :class:`StreamLink`, what the layers above may know of that connection:
  whether it is encrypted already, whether STARTTLS may be offered on it, its
  channel bindings, the client's address, and how stream headers and elements
  are framed on it (:mod:`fedxmpp.stream.framing`).  A client stream asks
  ``stream.link``, never the transport: so a WebSocket session is a client
  session over another link, not a copy of the c2s code.

:class:`TcpLink` is the link of a TCP connection (STARTTLS or direct TLS).
Another transport passes its own link to :class:`~fedxmpp.stream.xmlstream.ServerStream`
and is the stream's transport too (it provides both faces).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    ISSLTransport,
    ISystemHandle,
    ITCPTransport,
    ITLSTransport,
)

from fedxmpp.stream.framing import XML_STREAM, Framing


class IStreamTransport(ITLSTransport, ITCPTransport, IConsumer, IPushProducer, ISystemHandle):
    """A TCP transport that can start TLS, consumes a producer and can be paused."""

    def getHandle() -> Any:
        """The socket, or once TLS runs, the ``OpenSSL.SSL.Connection`` (whose type
        depends on the state, so callers get ``Any``, not ``object``)."""


#: The channel bindings of a TLS connection (``OpenSSL.SSL.Connection``) by type
#: name; :func:`fedxmpp.tls.channel_bindings` (this layer may not import it).
ChannelBindings = Callable[[Any], dict[str, bytes]]


class StreamLink(Protocol):
    """What the layers above a stream may know of, and ask from, its connection."""

    def attach(self, transport: Any) -> None:
        """The connection is made on *transport* (the stream's)."""

    @property
    def framing(self) -> Framing:
        """How headers, elements and the close are written and read on this link."""

    @property
    def secure(self) -> bool:
        """Encrypted from the client to us (or to a trusted proxy in front of us):
        TLS on this socket, HTTPS/WSS, or a trusted proxy that says https."""

    @property
    def starttls_offered(self) -> bool:
        """Whether STARTTLS (RFC 6120 §5) can run on this link now."""

    def start_tls(self, context_factory: Any) -> None:
        """Start TLS as the server, after ``<proceed/>`` was written."""

    def channel_bindings(self) -> dict[str, bytes]:
        """The channel bindings (RFC 5929, RFC 9266) that tie an authentication to
        this connection's TLS, by type name; empty when TLS does not end here
        (behind a proxy) or has not finished: then no -PLUS mechanism is offered."""

    @property
    def peer_host(self) -> str:
        """The client's address (behind a trusted proxy: the one the proxy saw)."""

    def peer_address(self) -> str:
        """The client's address and port for people (``host:port``, ``[v6]:port``)."""

    def tls_version(self) -> str | None:
        """The TLS version the client uses ("TLSv1.3"), "yes" when unknown, or
        None when the link is not encrypted."""


class TcpLink:
    """The :class:`StreamLink` of a TCP connection, from its Twisted transport.

    The transport is given when the connection is made (:meth:`attach`); it is
    encrypted once it provides ``ISSLTransport`` (direct TLS, or after
    ``startTLS``).
    """

    framing: Framing = XML_STREAM

    def __init__(self, channel_bindings: ChannelBindings | None = None) -> None:
        self._channel_bindings = channel_bindings
        self.transport: Any = None

    def attach(self, transport: Any) -> None:
        self.transport = transport

    @property
    def secure(self) -> bool:
        return ISSLTransport.providedBy(self.transport)

    @property
    def starttls_offered(self) -> bool:
        return not self.secure

    def start_tls(self, context_factory: Any) -> None:
        self.transport.startTLS(context_factory)

    def channel_bindings(self) -> dict[str, bytes]:
        if self._channel_bindings is None or not self.secure:
            return {}
        return self._channel_bindings(self.transport.getHandle())

    @property
    def peer_host(self) -> str:
        peer = self.transport.getPeer()
        return getattr(peer, "host", str(peer))

    def peer_address(self) -> str:
        return format_address(self.transport.getPeer())

    def tls_version(self) -> str | None:
        if not self.secure:
            return None
        try:
            version = self.transport.getHandle().get_protocol_version_name()
        except AttributeError:
            return "yes"
        return str(version) or "yes"


def format_address(peer: Any) -> str:
    """``host:port`` of a Twisted address (``[host]:port`` for IPv6)."""
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:
        return str(peer)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
