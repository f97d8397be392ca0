"""A component's domain federates under its own name, built through app.build:
its outgoing streams present its own certificate and authenticate with SASL
EXTERNAL, and remote servers' streams to it get its certificate (SNI), are
authenticated for it and carry stanzas to the component."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import directlyProvides

from fedxmpp import config
from fedxmpp.app import FedXmpp, build
from fedxmpp.s2s.resolver import Target
from fedxmpp.tls import CertificateStore, xmpp_addrs
from fedxmpp.xml.jid import JID
from tests.e2e.s2s_pki import CertAuthority
from tests.unit.s2s.world import PEER_HEADER, FakeResolver, bodies, message, written
from tests.unit.test_tls import client_connection, pump

GATEWAY = "irc.example.test"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TO_GATEWAY = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
              "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
              "from='remote.test' to='irc.example.test' version='1.0'>")


class _Handle:
    """What the transport's TLS connection says about the peer's certificate."""

    def __init__(self, chain: list[x509.Certificate]) -> None:
        self.chain = chain

    def get_peer_certificate(self, as_cryptography: bool = False) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    def get_peer_cert_chain(self, as_cryptography: bool = False) -> list[x509.Certificate]:
        return list(self.chain)


class StartTLSTransport(StringTransport):
    """Records the server or client side that STARTTLS was started with; from then
    on it is a TLS transport whose peer presented the chain the test gives."""

    def __init__(self, peer_chain: list[x509.Certificate]) -> None:
        super().__init__()
        self.creator = None
        self._chain = peer_chain

    def startTLS(self, creator, normal=True):
        self.creator = creator
        directlyProvides(self, ISSLTransport)

    def getHandle(self) -> _Handle:
        return _Handle(self._chain)


def server(tmp_path: Path, ca: CertAuthority) -> FedXmpp:
    """example.test with the component irc.example.test; peers' certificates must
    chain to *ca*; certificates self-signed on first start."""
    path = tmp_path / "fedxmpp.toml"
    path.write_text(f'''[server]
domains = ["example.test"]
data_dir = "{tmp_path / 'data'}"
[s2s]
ca_file = "{ca.path}"
[[components.component]]
domain = "{GATEWAY}"
secret = "s"
''')
    return build(config.load(path), MemoryReactorClock())


def chain_of(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def presented(creator, peer: CertificateStore) -> x509.Certificate | None:
    """The certificate the client side *creator* shows *peer*, which asks for one."""
    srv = peer.server_creator(request_client_cert=True).serverConnectionForTLS(object())
    srv.set_accept_state()
    client = creator.clientConnectionForTLS(object())
    client.set_connect_state()
    pump(srv, client)
    return srv.get_peer_certificate(as_cryptography=True)


def test_gateway_stream_presents_its_certificate_and_uses_sasl_external(tmp_path):
    """A message from the gateway to a remote user opens a stream from
    irc.example.test whose STARTTLS presents irc.example.test's certificate; the
    peer's certificate verifies and it offers EXTERNAL, so the stream
    authenticates with SASL EXTERNAL as irc.example.test (no dialback), then
    the message goes out."""
    ca = CertAuthority(tmp_path / "ca")
    peer_cert, _ = ca.issue("remote.test", tmp_path / "peer")
    app = server(tmp_path, ca)
    resolver = FakeResolver([Target("remote.test", 5269)])
    app.s2s.outgoing.resolver = resolver  # type: ignore[assignment]
    frm, to = f"#chan%irc.test@{GATEWAY}/nick", "bob@remote.test"
    app.router.route(message(frm, to, "from irc"), JID.parse(frm), JID.parse(to))

    target, factory, d = resolver.connects[-1]
    proto = factory.buildProtocol(None)
    transport = StartTLSTransport(chain_of(peer_cert))
    proto.makeConnection(transport)
    d.callback(proto)
    assert f"from='{GATEWAY}' to='remote.test'" in written(transport)
    proto.dataReceived((PEER_HEADER.format(id="s1") + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
                        "xmpp-tls'><required/></starttls></stream:features>").encode())
    proto.dataReceived(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert transport.creator is not None
    peer = CertificateStore(tmp_path / "peer-store", ["remote.test"], self_signed=True)
    peer.load()
    shown = presented(transport.creator, peer)
    assert shown is not None and xmpp_addrs(shown) == [GATEWAY]

    transport.clear()
    proto.dataReceived((PEER_HEADER.format(id="s2") + f"<stream:features><mechanisms xmlns='{SASL}'><mechanism>"
                        "EXTERNAL</mechanism></mechanisms><dialback xmlns='urn:xmpp:features:dialback'/>"
                        "</stream:features>").encode())
    authzid = base64.b64encode(GATEWAY.encode()).decode()
    assert written(transport) == f"<auth xmlns='{SASL}' mechanism='EXTERNAL'>{authzid}</auth>"
    proto.dataReceived(f"<success xmlns='{SASL}'/>".encode())
    proto.dataReceived((PEER_HEADER.format(id="s3") + "<stream:features/>").encode())
    assert bodies(written(transport)) == ["from irc"]
    assert "db:result" not in written(transport)


def test_remote_streams_to_the_gateway_get_its_certificate_and_reach_it(tmp_path):
    """A remote server connecting to irc.example.test gets that domain's
    certificate on STARTTLS — with SNI, and without (the stream header named the
    domain) — may authenticate with SASL EXTERNAL for it, and its stanzas reach
    the component's route."""
    ca = CertAuthority(tmp_path / "ca")
    peer_cert, _ = ca.issue("remote.test", tmp_path / "peer")
    app = server(tmp_path, ca)
    got = []
    app.router.remove_route(GATEWAY)
    app.router.add_route(GATEWAY, lambda stanza, frm, to: got.append((frm.full(), to.full(), str(stanza.body))))

    stream = app.s2s.incoming.buildProtocol(None)
    transport = StartTLSTransport(chain_of(peer_cert))
    stream.makeConnection(transport)
    stream.dataReceived(TO_GATEWAY.encode())
    stream.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert transport.creator is not None
    for sni in (GATEWAY.encode(), None):
        srv = transport.creator.serverConnectionForTLS(object())
        srv.set_accept_state()
        client = client_connection(sni)
        pump(srv, client)
        served = client.get_peer_certificate(as_cryptography=True)
        assert served is not None and xmpp_addrs(served) == [GATEWAY], sni

    transport.clear()
    stream.dataReceived(TO_GATEWAY.encode())
    assert "<mechanism>EXTERNAL</mechanism>" in written(transport)
    authzid = base64.b64encode(b"remote.test").decode()
    stream.dataReceived(f"<auth xmlns='{SASL}' mechanism='EXTERNAL'>{authzid}</auth>".encode())
    assert f"<success xmlns='{SASL}'/>" in written(transport)
    stream.dataReceived(TO_GATEWAY.encode())
    stream.dataReceived(f"<message from='bob@remote.test/b' to='#chan%irc.test@{GATEWAY}'><body>hi irc</body>"
                        "</message>".encode())
    assert got == [("bob@remote.test/b", f"#chan%irc.test@{GATEWAY}", "hi irc")]


def test_dialback_verify_for_the_gateway_is_answered(tmp_path):
    """A remote server asks us (db:verify, on a stream to irc.example.test) whether
    a dialback key that irc.example.test sent it is ours: the one we made for that
    stream is valid, any other invalid (XEP-0220 §2.4)."""
    app = server(tmp_path, CertAuthority(tmp_path / "ca"))
    stream = app.s2s.incoming.buildProtocol(None)
    transport = StartTLSTransport([])
    stream.makeConnection(transport)
    stream.dataReceived(TO_GATEWAY.encode())
    stream.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    stream.dataReceived(TO_GATEWAY.encode())
    key = app.s2s.ctx.keys.key("remote.test", GATEWAY, "stream-1")
    stream.dataReceived(f"<db:verify from='remote.test' to='{GATEWAY}' id='stream-1'>{key}</db:verify>".encode())
    assert f"<db:verify from='{GATEWAY}' to='remote.test' id='stream-1' type='valid'/>" in written(transport)
    stream.dataReceived(f"<db:verify from='remote.test' to='{GATEWAY}' id='stream-2'>{key}</db:verify>".encode())
    assert f"<db:verify from='{GATEWAY}' to='remote.test' id='stream-2' type='invalid'/>" in written(transport)
