"""The receiving side on fakes: features, dialback as receiving and as
authoritative server, SASL EXTERNAL, and the checks on every inbound stanza."""

from __future__ import annotations

import base64

from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import directlyProvides

from fedxmpp.router import Router
from fedxmpp.s2s.incoming import IncomingFactory
from tests.unit.s2s.world import HOSTED, Delivered, context, written

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' from='{frm}' to='{to}' version='1.0'>")


class FakeOutgoing:
    """Records db:verify requests; the test answers them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, str, defer.Deferred]] = []

    def verify(self, local, remote, stream_id, key):
        d = defer.Deferred()
        self.requests.append((local, remote, stream_id, key, d))
        return d


def incoming(tmp_path, *, frm="remote.test", to="example.test", transport=None, **s2s):
    """A stream from *frm* to *to* on a StringTransport, its header already read."""
    router = Router(HOSTED)
    delivered = Delivered()
    router.set_local(delivered)
    ctx = context(tmp_path, router=router, **{"verify_certificates": False, **s2s})
    out = FakeOutgoing()
    factory = IncomingFactory(ctx, out)
    stream = factory.buildProtocol(None)
    transport = transport or StringTransport()
    stream.makeConnection(transport)
    stream.dataReceived(HEADER.format(frm=frm, to=to).encode())
    return stream, transport, out, delivered, ctx


def authenticate(stream, transport, out, remote="remote.test", local="example.test"):
    stream.dataReceived(f"<db:result from='{remote}' to='{local}'>somekey</db:result>".encode())
    req = out.requests[-1]
    assert req[:4] == (local, remote, stream.stream_id, "somekey")
    req[4].callback(("valid", None))
    assert f"<db:result from='{local}' to='{remote}' type='valid'/>" in written(transport)


def test_features_before_tls(tmp_path):
    """Without TLS yet, STARTTLS is offered — and when encryption is required, as
    the only, required feature; otherwise dialback is offered beside it."""
    stream, transport, *_ = incoming(tmp_path, require_encryption=True)
    text = written(transport)
    assert "xmlns:db='jabber:server:dialback'" in text
    assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in text
    assert "dialback" not in text.split("<stream:features>")[1]
    stream, transport, *_ = incoming(tmp_path, require_encryption=False)
    features = written(transport).split("<stream:features>")[1]
    assert "<starttls" in features and "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>" in features


def test_unknown_to_domain_is_host_unknown(tmp_path):
    """A stream header for a domain we do not serve gets <host-unknown/>."""
    stream, transport, *_ = incoming(tmp_path, to="elsewhere.test")
    assert "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)


def test_dialback_verified_then_stanzas_routed(tmp_path):
    """db:result is checked with the authoritative server (through the outgoing
    side, with this stream's id); once valid, a stanza from that domain to ours is
    routed with parsed addresses."""
    stream, transport, out, delivered, _ = incoming(tmp_path)
    authenticate(stream, transport, out)
    stream.dataReceived(b"<message from='bob@remote.test/r' to='alice@example.test' type='chat'><body>hi</body>"
                        b"</message>")
    assert [(s.name, s["from"], s["to"]) for s in delivered.stanzas] == [
        ("message", "bob@remote.test/r", "alice@example.test")]


def test_invalid_dialback_closes_and_delivers_nothing(tmp_path):
    """When the authoritative server says the key is not its own, the claimant gets
    type='invalid' and a <not-authorized/> stream error; nothing it sent is routed."""
    stream, transport, out, delivered, _ = incoming(tmp_path)
    stream.dataReceived(b"<db:result from='remote.test' to='example.test'>forged</db:result>")
    out.requests[-1][4].callback(("invalid", None))
    text = written(transport)
    assert "<db:result from='example.test' to='remote.test' type='invalid'/>" in text
    assert "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in text
    stream.dataReceived(b"<message from='bob@remote.test' to='alice@example.test'><body>x</body></message>")
    assert delivered.stanzas == []


def test_dialback_errors(tmp_path):
    """XEP-0220 §2.6: a db:result for a domain we do not host is answered with
    <item-not-found/>, one before TLS (when required) with <policy-violation/>,
    one that cannot be verified with the authoritative server's failure — and the
    stream stays open."""
    stream, transport, out, _, _ = incoming(tmp_path)
    stream.dataReceived(b"<db:result from='remote.test' to='nothere.test'>k</db:result>")
    assert ("<db:result from='nothere.test' to='remote.test' type='error'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>") in written(transport)
    stream.dataReceived(b"<db:result from='remote.test' to='example.test'>k</db:result>")
    out.requests[-1][4].callback(("error", "remote-connection-failed"))
    assert "<remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in written(transport)
    assert not stream.closed

    stream, transport, out, _, _ = incoming(tmp_path, require_encryption=True)
    stream.dataReceived(b"<db:result from='remote.test' to='example.test'>k</db:result>")
    assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in written(transport)
    assert out.requests == []


def test_verify_certificates_refuses_dialback_without_a_valid_certificate(tmp_path):
    """With verify_certificates on, a peer whose certificate does not verify for
    the claimed domain (here: no TLS, no certificate) gets <not-authorized/>, and
    no verification is even attempted."""
    stream, transport, out, _, _ = incoming(tmp_path, verify_certificates=True)
    stream.dataReceived(b"<db:result from='remote.test' to='example.test'>k</db:result>")
    assert "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in written(transport)
    assert out.requests == []


def test_answers_verification_requests_as_authoritative_server(tmp_path):
    """db:verify asks whether a key is ours: valid for the key we made for that
    stream, invalid otherwise, item-not-found for a domain we do not host."""
    stream, transport, out, _, ctx = incoming(tmp_path)
    key = ctx.keys.key("remote.test", "example.test", "sid1")
    stream.dataReceived(f"<db:verify from='remote.test' to='example.test' id='sid1'>{key}</db:verify>".encode())
    stream.dataReceived(b"<db:verify from='remote.test' to='example.test' id='sid1'>0000</db:verify>")
    stream.dataReceived(f"<db:verify from='remote.test' to='else.test' id='sid1'>{key}</db:verify>".encode())
    text = written(transport)
    assert "<db:verify from='example.test' to='remote.test' id='sid1' type='valid'/>" in text
    assert "<db:verify from='example.test' to='remote.test' id='sid1' type='invalid'/>" in text
    assert "<db:verify from='else.test' to='remote.test' id='sid1' type='error'>" in text


def test_stanza_before_authentication_is_not_authorized(tmp_path):
    """A stanza on a stream that authenticated nothing: <not-authorized/>, not routed."""
    stream, transport, out, delivered, _ = incoming(tmp_path)
    stream.dataReceived(b"<message from='bob@remote.test' to='alice@example.test'><body>x</body></message>")
    assert "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)
    assert delivered.stanzas == []


def test_from_must_be_an_authenticated_domain(tmp_path):
    """After remote.test authenticated, a stanza 'from' another domain is
    <invalid-from/>; nothing is routed."""
    stream, transport, out, delivered, _ = incoming(tmp_path)
    authenticate(stream, transport, out)
    stream.dataReceived(b"<message from='mallory@forged.test' to='alice@example.test'><body>x</body></message>")
    assert "<invalid-from xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)
    assert delivered.stanzas == []


def test_to_must_be_ours(tmp_path):
    """A stanza to a domain we neither host nor route is <host-unknown/>."""
    stream, transport, out, delivered, _ = incoming(tmp_path)
    authenticate(stream, transport, out)
    stream.dataReceived(b"<message from='bob@remote.test' to='x@third.test'><body>x</body></message>")
    assert "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)
    assert delivered.stanzas == []


def test_missing_addresses_are_improper_addressing(tmp_path):
    """A stanza between servers without 'from' or 'to' is <improper-addressing/>."""
    stream, transport, out, delivered, _ = incoming(tmp_path)
    authenticate(stream, transport, out)
    stream.dataReceived(b"<message to='alice@example.test'><body>x</body></message>")
    assert "<improper-addressing xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in written(transport)
    assert delivered.stanzas == []


def test_component_domains_are_ours_too(tmp_path):
    """A domain a component registered on the router is accepted as 'to' (and for
    dialback); the stanza goes to the component's route."""
    stream, transport, out, delivered, ctx = incoming(tmp_path)
    got = []
    ctx.router.add_route("irc.example.test", lambda stanza, frm, to: got.append(to.full()))
    authenticate(stream, transport, out, local="irc.example.test")
    stream.dataReceived(b"<message from='bob@remote.test' to='#room@irc.example.test'><body>x</body></message>")
    assert got == ["#room@irc.example.test"]


class _Handle:
    """The pyOpenSSL connection of a finished handshake, as the transport gives it."""

    def __init__(self, chain):
        self.chain = chain

    def get_peer_certificate(self, as_cryptography=False):
        return self.chain[0] if self.chain else None

    def get_peer_cert_chain(self, as_cryptography=False):
        return list(self.chain)


def _tls_transport(chain):
    transport = StringTransport()
    directlyProvides(transport, ISSLTransport)
    transport.getHandle = lambda: _Handle(chain)
    return transport


def test_sasl_external_with_a_verified_certificate(tmp_path):
    """Over TLS, a peer whose certificate (from the configured CA, server-auth only)
    names its 'from' domain is offered SASL EXTERNAL; its authzid must be that
    domain (or empty); success authenticates the pair and restarts the stream."""
    from cryptography import x509

    from tests.e2e.s2s_pki import CertAuthority

    ca = CertAuthority(tmp_path / "ca")
    cert, _ = ca.issue("remote.test", tmp_path / "peer", server_auth_only=True)
    chain = x509.load_pem_x509_certificates(cert.read_bytes())
    from fedxmpp.tls import PeerVerifier

    # Against the system's CA store the test CA's certificate does not verify: no offer.
    stream, transport, *_ = _with_verifier(tmp_path, chain, PeerVerifier(None))
    assert "EXTERNAL" not in written(transport)
    stream, transport, out, delivered, ctx = _with_verifier(tmp_path, chain, PeerVerifier(ca.path))
    assert "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>" in written(transport)
    bad = base64.b64encode(b"other.test").decode()
    stream.dataReceived(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{bad}</auth>".encode())
    assert "<invalid-authzid/>" in written(transport)
    good = base64.b64encode(b"remote.test").decode()
    stream.dataReceived(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{good}</auth>".encode())
    assert written(transport).endswith("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    transport.clear()
    stream.dataReceived(HEADER.format(frm="remote.test", to="example.test").encode())
    assert "EXTERNAL" not in written(transport)
    stream.dataReceived(b"<message from='bob@remote.test' to='alice@example.test'><body>x</body></message>")
    assert len(delivered.stanzas) == 1


def test_sasl_external_refused_for_a_certificate_naming_another_domain(tmp_path):
    """A verified certificate for another domain earns neither the EXTERNAL offer
    nor success when the peer tries anyway: <not-authorized/>, nothing authenticated."""
    from cryptography import x509

    from fedxmpp.tls import PeerVerifier
    from tests.e2e.s2s_pki import CertAuthority

    ca = CertAuthority(tmp_path / "ca")
    cert, _ = ca.issue("someone-else.test", tmp_path / "peer")
    chain = x509.load_pem_x509_certificates(cert.read_bytes())
    stream, transport, out, delivered, ctx = _with_verifier(tmp_path, chain, PeerVerifier(ca.path))
    assert "EXTERNAL" not in written(transport)
    stream.dataReceived(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
    assert "<not-authorized/>" in written(transport)
    assert stream.handler.authed == set()


def _with_verifier(tmp_path, chain, verifier):
    router = Router(HOSTED)
    delivered = Delivered()
    router.set_local(delivered)
    ctx = context(tmp_path, router=router, verify_certificates=True)
    ctx.verifier = verifier
    out = FakeOutgoing()
    stream = IncomingFactory(ctx, out).buildProtocol(None)
    transport = _tls_transport(chain)
    stream.makeConnection(transport)
    stream.dataReceived(HEADER.format(frm="remote.test", to="example.test").encode())
    return stream, transport, out, delivered, ctx


def test_claiming_one_of_our_own_domains_is_refused(tmp_path):
    """A peer claiming, by dialback, to be a domain we host gets <not-authorized/>
    without any verification being attempted."""
    stream, transport, out, delivered, _ = incoming(tmp_path, frm="other.test")
    stream.dataReceived(b"<db:result from='other.test' to='example.test'>k</db:result>")
    assert "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in written(transport)
    assert out.requests == []
