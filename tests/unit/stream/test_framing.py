"""RFC 7395 framing on a ServerStream (fakes): <open/> and <close/>, one element
per message, each a document of its own; and the TCP framing left as it was."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from twisted.words.xish import domish

from fedxmpp.stream.framing import FRAMING_NS
from fedxmpp.xml import ns
from fedxmpp.xml.serialize import serialize
from fedxmpp.stream.xmlstream import ServerStream
from tests.unit.fakes import MessageLink
from tests.unit.stream.test_xmlstream import Limits, RecordingHandler, connect
from twisted.internet.task import Clock

OPEN = f"<open xmlns='{FRAMING_NS}' to='example.test' version='1.0'/>".encode()


def ws_connect(**kw: Any):
    link, clock, handler = MessageLink(), Clock(), RecordingHandler()
    stream = ServerStream(handler, content_ns=ns.CLIENT, limits=Limits(), clock=clock, negotiation_timeout=30,
                          link=link, **kw)
    stream.makeConnection(link)
    return stream, handler, link, clock


def parse(message: str) -> ET.Element:
    """A message must be a standalone document: the standard library parses it alone."""
    return ET.fromstring(message)


def test_open_is_answered_with_open_and_standalone_features():
    """<open/> stands for the stream header; our <open/> and <stream:features/>
    are two messages, each parseable on its own."""
    stream, handler, link, _ = ws_connect()
    stream.dataReceived(OPEN)
    assert len(link.messages) == 2
    opened, features = (parse(m) for m in link.messages)
    assert opened.tag == f"{{{FRAMING_NS}}}open"
    assert opened.get("from") == "example.test" and opened.get("version") == "1.0" and opened.get("id")
    assert features.tag == f"{{{ns.STREAMS}}}features"


def test_each_stanza_message_reaches_the_handler_in_jabber_client():
    stream, handler, link, _ = ws_connect()
    stream.dataReceived(OPEN)
    stream.dataReceived(b"<message xmlns='jabber:client' to='a@example.test'><body>hi</body></message>")
    stream.dataReceived(b"<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert [(e.uri, e.name) for e in handler.elements] == [(ns.CLIENT, "message"), (ns.CLIENT, "iq")]
    assert not stream.closed


def test_sent_stanzas_declare_their_namespace():
    stream, _, link, _ = ws_connect()
    stream.dataReceived(OPEN)
    msg = domish.Element((ns.CLIENT, "message"))
    msg.addElement("body", content="x")
    stream.send(msg)
    assert parse(link.messages[-1]).tag == "{jabber:client}message"
    assert link.messages[-1] == "<message xmlns='jabber:client'><body>x</body></message>"


@pytest.mark.parametrize("message,condition", [
    (b"<message xmlns='jabber:client'/><message xmlns='jabber:client'/>", "not-well-formed"),
    (b"<message xmlns='jabber:client'><body>hi</body>", "not-well-formed"),
    (b"<message xmlns='jabber:client' to='a'", "not-well-formed"),
    (b"<message xmlns='jabber:client'/><iq c='>'", "not-well-formed"),
    (b"hello, world", "not-well-formed"),
    (b"<message xmlns='jabber:client'><!-- no --></message>", "restricted-xml"),
])
def test_a_message_that_is_not_one_element_is_a_stream_error(message, condition):
    stream, handler, link, _ = ws_connect()
    stream.dataReceived(OPEN)
    stream.dataReceived(message)
    error = parse(link.messages[-2])
    assert error.tag == f"{{{ns.STREAMS}}}error"
    assert error[0].tag == f"{{{ns.STREAM_ERRORS}}}{condition}"
    assert link.messages[-1] == f"<close xmlns='{FRAMING_NS}'/>"
    assert stream.closed and link.disconnecting


@pytest.mark.parametrize("first", [
    b"<open xmlns='jabber:client' to='example.test' version='1.0'/>",
    b"<message xmlns='jabber:client'/>",
])
def test_the_first_message_must_be_open_in_the_framing_namespace(first):
    stream, _, link, _ = ws_connect()
    stream.dataReceived(first)
    assert parse(link.messages[0]).tag == f"{{{FRAMING_NS}}}open"
    error = parse(link.messages[1])
    assert error[0].tag == f"{{{ns.STREAM_ERRORS}}}invalid-namespace"
    assert link.messages[-1] == f"<close xmlns='{FRAMING_NS}'/>" and stream.closed


def test_a_stream_header_is_not_a_websocket_message():
    """The TCP header is an unclosed element: not a document of its own."""
    stream, _, link, _ = ws_connect()
    stream.dataReceived(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                        b"to='example.test' version='1.0'>")
    assert parse(link.messages[1])[0].tag == f"{{{ns.STREAM_ERRORS}}}not-well-formed"


def test_close_is_answered_with_close():
    stream, handler, link, _ = ws_connect()
    stream.dataReceived(OPEN)
    stream.dataReceived(f"<close xmlns='{FRAMING_NS}'/>".encode())
    assert link.messages[-1] == f"<close xmlns='{FRAMING_NS}'/>"
    assert stream.close_reason == "peer" and link.disconnecting and handler.closing == 1


def test_restart_expects_a_new_open():
    stream, handler, link, _ = ws_connect()
    stream.dataReceived(OPEN)
    stream.restart()
    stream.dataReceived(OPEN)
    assert [parse(m).tag for m in link.messages].count(f"{{{FRAMING_NS}}}open") == 2


def test_no_whitespace_keepalives():
    """RFC 7395 §3.7: keepalives are WebSocket pings, never whitespace messages."""
    stream, _, link, clock = ws_connect(keepalive_interval=10)
    stream.dataReceived(OPEN)
    n = len(link.messages)
    clock.advance(25)
    assert len(link.messages) == n


def test_the_tcp_framing_is_unchanged():
    stream, _, transport, _ = connect(keepalive_interval=10)
    stream.dataReceived(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                        b"xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>")
    assert transport.value().startswith(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream=")
    msg = domish.Element((ns.CLIENT, "message"))
    assert serialize(msg, ns.CLIENT) == "<message/>"
    stream.close()
    assert transport.value().endswith(b"</stream:stream>")


def test_standalone_stream_elements_declare_the_stream_prefix():
    features = domish.Element((ns.STREAMS, "features"))
    features.addElement((ns.BIND, "bind"))
    text = serialize(features, ns.CLIENT, standalone=True)
    assert parse(text).tag == f"{{{ns.STREAMS}}}features"
