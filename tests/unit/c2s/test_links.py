"""A client stream asks its link, not a TCP transport: encryption, STARTTLS,
channel bindings and the client's address; and a WebSocket session is the same
client session as a TCP one (stream management resumes across the two)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from fedxmpp.stream.framing import FRAMING_NS
from fedxmpp.xml import ns
from tests.unit.c2s.world import DOMAIN, SM, World, q, stream_error
from tests.unit.fakes import MessageLink

OPEN = f"<open xmlns='{FRAMING_NS}' to='{DOMAIN}' version='1.0'/>".encode()


def open_ws(w: World, link: MessageLink) -> list[ET.Element]:
    stream = w.server.c2s_factory.client_stream(link)
    stream.makeConnection(link)
    stream.dataReceived(OPEN)
    return [ET.fromstring(m) for m in link.messages]


def mechanisms(features: ET.Element) -> list[str]:
    return [m.text or "" for m in features.iter(f"{{{ns.SASL}}}mechanism")]


def test_a_secure_link_goes_straight_to_sasl_without_starttls():
    w = World()
    opened, features = open_ws(w, MessageLink())
    assert features.find(f"{{{ns.TLS}}}starttls") is None
    assert "SCRAM-SHA-256" in mechanisms(features)
    assert not any(m.endswith("-PLUS") for m in mechanisms(features))
    assert features.find(f"{{{ns.SASL_CB}}}sasl-channel-binding") is None


def test_channel_bindings_come_from_the_link():
    """A link whose TLS ends here (direct WSS) gives its bindings: -PLUS is offered."""
    w = World()
    link = MessageLink()
    link.bindings = {"tls-exporter": b"\x01" * 32}
    _, features = open_ws(w, link)
    assert "SCRAM-SHA-256-PLUS" in mechanisms(features)


def test_an_unencrypted_link_without_starttls_is_refused():
    """Plain ws:// not vouched for by a trusted proxy: no way to encrypt, so no
    authentication; the stream ends with <policy-violation/>."""
    w = World()
    link = MessageLink()
    link.secure = False
    elements = open_ws(w, link)
    assert stream_error(elements[1]) == "policy-violation"
    assert elements[-1].tag == f"{{{FRAMING_NS}}}close" and link.disconnecting


def test_the_client_address_is_the_links():
    """The address the auth throttle and the log see is the link's (behind a
    trusted proxy: the client's, not the proxy's)."""
    w = World()
    link = MessageLink()
    link.peer_host = "198.51.100.9"
    open_ws(w, link)
    stream = w.server.c2s_factory.streams.copy().pop()
    from fedxmpp.c2s.negotiation import _peer_host
    assert _peer_host(stream) == "198.51.100.9"


def test_a_tcp_session_resumes_over_websocket_and_back():
    """XEP-0198 across transports: the session bound on TCP hibernates when its
    connection breaks, is resumed by a WebSocket stream (same session object, same
    full JID, unacked stanzas resent as standalone messages), and once that
    connection breaks too, resumed again on TCP."""
    w = World()
    w.befriend("alice", "bob")
    b = w.online("bob", "desk", sm=False)
    a = w.online("alice", "phone")
    session = w.session(a)
    b.send(f"<message to='alice@{DOMAIN}/phone' type='chat'><body>one</body></message>")
    assert a.bodies() == ["one"]
    handled = a.handled
    a.drop()
    b.send(f"<message to='alice@{DOMAIN}' type='chat'><body>two</body></message>")

    ws = w.connect_ws("alice")
    resumed = ws.resume(a.sm_id, handled)
    assert resumed.tag == q("resumed", SM)
    assert ws.bodies() == ["two"]
    assert w.session(a) is session and session.stream is ws.stream
    assert any(m.startswith("<message xmlns='jabber:client'") for m in ws.link.messages)
    ws.send(f"<message xmlns='jabber:client' to='bob@{DOMAIN}' type='chat'><body>from ws</body></message>")
    assert b.bodies() == ["from ws"]
    ws.send(f"<r xmlns='{SM}'/>")
    # h counts on: the presence sent over TCP, then this message.
    assert [el.get("h") for el in ws.take() if el.tag == q("a", SM)] == ["2"]

    b.send(f"<message to='alice@{DOMAIN}' type='chat'><body>three</body></message>")
    ws.stream.connectionLost(Failure(ConnectionLost("gone")))
    assert session.sm.hibernating
    tcp = w.connect("alice")
    assert tcp.resume(a.sm_id, handled + 1).tag == q("resumed", SM)
    assert tcp.bodies() == ["three"]
    assert w.session(a) is session and session.stream is tcp.stream


def test_a_websocket_client_that_closes_gets_the_final_ack_and_close():
    """XEP-0198's graceful close over WebSocket: the client's <close/> is answered
    with a last <a h/> and then <close/>; the session ends (not resumable)."""
    w = World()
    ws = w.connect_ws("alice")
    ws.bind("web")
    ws.enable(resume="true")
    ws.send(f"<presence xmlns='jabber:client'/>")
    ws.take()
    session = w.session(ws)
    ws.close()
    tail = ws.take()
    assert [el.tag for el in tail] == [q("a", SM), f"{{{FRAMING_NS}}}close"]
    assert tail[0].get("h") == "1"
    assert session.over and w.session(ws) is None
