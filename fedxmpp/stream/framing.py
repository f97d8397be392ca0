"""How an XML stream is framed on its connection.

* :data:`XML_STREAM` — RFC 6120 §4 over TCP: one XML document for the whole
  stream, ``<stream:stream>`` header and ``</stream:stream>`` close, elements
  inherit the header's namespaces, whitespace keepalives.
* :data:`WEBSOCKET` — RFC 7395: each WebSocket message is one complete XML
  document: ``<open/>`` in place of the header, ``<close/>`` in place of the
  closing tag (both in ``urn:ietf:params:xml:ns:xmpp-framing``), one element
  per message, each declaring its own namespaces; no whitespace keepalives
  (WebSocket pings instead).

A :class:`~fedxmpp.stream.xmlstream.ServerStream` writes what the framing of its
link says and reads with the framing's parser; the rest of the stream (limits,
timers, flow control, negotiation) is the same on every framing.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.words.xish import domish

from fedxmpp.xml import ns
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.parser import StreamParser

#: RFC 7395 §3.3.1: the namespace of <open/> and <close/>.
FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"


class Parser(Protocol):
    def feed(self, data: bytes) -> None: ...
    def stop(self) -> None: ...


class Framing(Protocol):
    #: Each element written is a document of its own (declares its namespaces).
    standalone: bool
    #: What keeps a quiet stream alive, or None when the transport pings itself.
    keepalive: str | None
    #: What ends the stream.
    closing: str

    def header(self, attributes: list[str]) -> str:
        """Our stream header from its ``name='value'`` attributes, namespace
        declarations (``xmlns``, ``xmlns:stream``...) first."""

    def parser(self, *, on_stream_start: Callable[[domish.Element], None],
               on_element: Callable[[domish.Element], None], on_stream_end: Callable[[], None],
               max_stanza_size: int, max_depth: int) -> Parser:
        """A parser for one stream (and one after each restart)."""


class XmlStreamFraming:
    """RFC 6120 §4: one XML document per stream."""

    standalone = False
    keepalive: str | None = " "
    closing = "</stream:stream>"

    def header(self, attributes: list[str]) -> str:
        return "<?xml version='1.0'?><stream:stream " + " ".join(attributes) + ">"

    def parser(self, *, on_stream_start: Callable[[domish.Element], None],
               on_element: Callable[[domish.Element], None], on_stream_end: Callable[[], None],
               max_stanza_size: int, max_depth: int) -> Parser:
        return StreamParser(on_stream_start=on_stream_start, on_element=on_element, on_stream_end=on_stream_end,
                            max_stanza_size=max_stanza_size, max_depth=max_depth)


class WebSocketFraming:
    """RFC 7395: one complete element per message, <open/> and <close/>."""

    standalone = True
    keepalive: str | None = None
    closing = f"<close xmlns='{FRAMING_NS}'/>"

    def header(self, attributes: list[str]) -> str:
        # <open/> is a document of its own: the stream's namespaces are not declared on it.
        kept = [a for a in attributes if not a.startswith("xmlns")]
        return f"<open xmlns='{FRAMING_NS}' " + " ".join(kept) + "/>"

    def parser(self, *, on_stream_start: Callable[[domish.Element], None],
               on_element: Callable[[domish.Element], None], on_stream_end: Callable[[], None],
               max_stanza_size: int, max_depth: int) -> Parser:
        return MessageParser(on_stream_start=on_stream_start, on_element=on_element, on_stream_end=on_stream_end,
                             max_stanza_size=max_stanza_size, max_depth=max_depth)


class MessageParser:
    """Reads RFC 7395 messages, one per :meth:`feed`, with the same caps and
    restrictions as a TCP stream (:class:`StreamParser` underneath).

    The messages are parsed as the children of an implicit stream root whose
    default namespace is ``jabber:client``; the first must be ``<open/>``
    (reported as the stream header), ``<close/>`` ends the stream, and every
    message must hold exactly one complete element.
    """

    __slots__ = ("_on_stream_start", "_on_element", "_on_stream_end", "_parser", "_opened", "_count", "_stopped")

    def __init__(self, *, on_stream_start: Callable[[domish.Element], None],
                 on_element: Callable[[domish.Element], None], on_stream_end: Callable[[], None],
                 max_stanza_size: int, max_depth: int) -> None:
        self._on_stream_start = on_stream_start
        self._on_element = on_element
        self._on_stream_end = on_stream_end
        self._opened = False
        self._count = 0
        self._stopped = False
        self._parser = StreamParser(on_stream_start=_ignore, on_element=self._element, on_stream_end=_ignore,
                                    max_stanza_size=max_stanza_size, max_depth=max_depth)
        self._parser.feed(f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}'>".encode())

    def feed(self, data: bytes) -> None:
        """Parse one whole message."""
        if self._stopped:
            return
        self._count = 0
        self._parser.feed(data)
        if self._stopped:
            return  # <close/>, or the stream restarted: nothing after it counts
        if self._count == 0 and not data.strip(b" \t\r\n"):
            return  # a whitespace message: nothing to frame
        if self._count != 1 or not self._parser.between_elements:
            self.stop()
            raise StreamError("not-well-formed", "Each WebSocket message must be one complete XML element")

    def stop(self) -> None:
        self._stopped = True
        self._parser.stop()

    def _element(self, element: domish.Element) -> None:
        self._count += 1
        if self._count > 1:
            raise StreamError("not-well-formed", "Each WebSocket message must be one complete XML element")
        if not self._opened:
            if element.uri != FRAMING_NS or element.name != "open":
                raise StreamError("invalid-namespace",
                                  f"The first message must be <open xmlns='{FRAMING_NS}'/> (RFC 7395)")
            self._opened = True
            self._on_stream_start(_as_header(element))
        elif element.uri == FRAMING_NS:
            if element.name != "close":
                raise StreamError("invalid-xml", f"<{element.name}/> is not allowed here (RFC 7395)")
            self.stop()
            self._on_stream_end()
        else:
            self._on_element(element)


def _as_header(open_: domish.Element) -> domish.Element:
    """<open/> as the stream header it stands for (RFC 7395 §3.4)."""
    root = domish.Element((ns.STREAMS, "stream"), defaultUri=ns.CLIENT)
    root.attributes.update(open_.attributes)
    return root


def _ignore(*_: object) -> None:
    pass


XML_STREAM = XmlStreamFraming()
WEBSOCKET = WebSocketFraming()
