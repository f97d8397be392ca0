"""Certificates, SNI and channel bindings (fedxmpp.tls), with in-memory handshakes."""

from __future__ import annotations

import datetime
import hashlib
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import protocol, ssl, task
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from fedxmpp.tls import (
    CertificateStore, TLSSetupError, _end_point_hash, channel_bindings, generate_self_signed,
    negotiated_server_name, xmpp_addrs,
)

# -- helpers ------------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.timezone.utc)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_cert(subject: str, key: Any, *, issuer: tuple[str, Any] | None = None, names: list[str] | None = None,
              ca: bool = False, not_after: datetime.datetime | None = None) -> x509.Certificate:
    """A certificate for *subject*, self-signed unless *issuer* (name, key) is given."""
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=2))
               .not_valid_after(not_after or NOW + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    return builder.sign(issuer_key, None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256())


def pump(server: SSL.Connection, client: SSL.Connection) -> None:
    """Run a handshake between two memory-BIO connections."""
    for _ in range(50):
        done = 0
        for conn in (client, server):
            try:
                conn.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
        moved = False
        for src, dst in ((client, server), (server, client)):
            try:
                data = src.bio_read(65536)
            except SSL.WantReadError:
                continue
            dst.bio_write(data)
            moved = True
        if done == 2 and not moved:
            return
    raise AssertionError("handshake did not finish")


def client_connection(server_name: bytes | None = None, *, max_version: int | None = None,
                      alpn: list[bytes] | None = None) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if alpn:
        ctx.set_alpn_protos(alpn)
    conn = SSL.Connection(ctx, None)
    if server_name:
        conn.set_tlsext_host_name(server_name)
    conn.set_connect_state()
    return conn


def connect(store: CertificateStore, server_name: bytes | None = None,
            **client: Any) -> tuple[SSL.Connection, SSL.Connection]:
    """A finished in-memory handshake: (server side, client side)."""
    server = store.server_creator(alpn=client.pop("server_alpn", ())).serverConnectionForTLS(object())
    server.set_accept_state()
    conn = client_connection(server_name, **client)
    pump(server, conn)
    return server, conn


def served_cert(client: SSL.Connection) -> x509.Certificate:
    cert = client.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    return cert


def loaded(tmp_path: Path, *domains: str, self_signed: bool = True) -> CertificateStore:
    store = CertificateStore(tmp_path / "certs", domains, self_signed=self_signed)
    store.load()
    return store


# -- self-signed certificates -------------------------------------------------------

def test_generate_self_signed(tmp_path: Path) -> None:
    """A generated certificate names the domain as DNS-ID and XmppAddr, serves and
    authenticates as client, lasts about a year; its key is private (0600) in a
    private (0700) directory, and matches."""
    directory = tmp_path / "new" / "certs"
    cert_path, key_path = generate_self_signed("example.test", directory)
    assert (cert_path, key_path) == (directory / "example.test.crt", directory / "example.test.key")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.test"]
    assert xmpp_addrs(cert) == ["example.test"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    lifetime = cert.not_valid_after_utc - NOW
    assert datetime.timedelta(days=360) < lifetime <= datetime.timedelta(days=366)
    assert not list(directory.glob(".*"))  # no temporary files left behind


def test_generate_self_signed_idn(tmp_path: Path) -> None:
    """An internationalised domain is an A-label DNS-ID and a UTF-8 XmppAddr."""
    cert_path, _ = generate_self_signed("bücher.example", tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["xn--bcher-kva.example"]
    assert xmpp_addrs(cert) == ["bücher.example"]


def test_load_generates_once_then_reuses(tmp_path: Path) -> None:
    """The first load generates a certificate (and says so); the next load reuses it."""
    with capturedLogs() as events:
        loaded(tmp_path, "example.test")
    assert any("self-signed" in e["log_format"] for e in events)
    cert_file = tmp_path / "certs" / "example.test.crt"
    first = cert_file.read_bytes()
    with capturedLogs() as events:
        store = loaded(tmp_path, "example.test")
    assert cert_file.read_bytes() == first
    assert not any("Generated" in e["log_format"] for e in events)
    _, client = connect(store)
    assert pem(served_cert(client)) == first


def test_missing_certificate_without_self_signed(tmp_path: Path) -> None:
    """With self-signing off, a domain without certificate stops start-up with a
    message naming the directory, the domain and the expected files."""
    with pytest.raises(TLSSetupError) as info:
        loaded(tmp_path, "example.test", self_signed=False)
    message = str(info.value)
    assert str(tmp_path / "certs") in message and "example.test.crt" in message and "\n" not in message
    assert not (tmp_path / "certs").exists()


# -- loading ------------------------------------------------------------------------------------

def write_pair(directory: Path, cert_name: str, key_name: str, chain: list[x509.Certificate], key: Any) -> None:
    (directory / cert_name).parent.mkdir(parents=True, exist_ok=True)
    (directory / cert_name).write_bytes(b"".join(pem(c) for c in chain))
    (directory / key_name).write_bytes(key_pem(key))
    (directory / key_name).chmod(0o600)


def test_certbot_layout_with_chain(tmp_path: Path) -> None:
    """DOMAIN/fullchain.pem + DOMAIN/privkey.pem are used, and the whole chain is
    served; nothing is generated."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = make_cert("Test CA", ca_key, ca=True)
    leaf = make_cert("example.test", leaf_key, issuer=("Test CA", ca_key), names=["example.test"])
    certs = tmp_path / "certs"
    write_pair(certs, "example.test/fullchain.pem", "example.test/privkey.pem", [leaf, ca], leaf_key)
    store = loaded(tmp_path, "example.test", self_signed=True)
    assert not (certs / "example.test.crt").exists()
    _, client = connect(store, b"example.test")
    chain = client.get_peer_cert_chain(as_cryptography=True)
    assert chain is not None and [c.subject for c in chain] == [leaf.subject, ca.subject]


def test_certbot_layout_preferred(tmp_path: Path) -> None:
    """When both layouts exist, the certbot one wins (a certificate generated on first
    start must not hide one installed later), with a warning."""
    generate_self_signed("example.test", tmp_path / "certs")
    key = ec.generate_private_key(ec.SECP256R1())
    real = make_cert("example.test", key, names=["example.test"])
    write_pair(tmp_path / "certs", "example.test/fullchain.pem", "example.test/privkey.pem", [real], key)
    with capturedLogs() as events:
        store = loaded(tmp_path, "example.test")
    assert any("Both" in e["log_format"] for e in events)
    _, client = connect(store)
    assert served_cert(client) == real


def test_mismatched_key(tmp_path: Path) -> None:
    """A key that does not belong to the certificate is refused, naming both files."""
    certs = tmp_path / "certs"
    key = ec.generate_private_key(ec.SECP256R1())
    write_pair(certs, "example.test.crt", "example.test.key",
               [make_cert("example.test", key, names=["example.test"])], ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(TLSSetupError) as info:
        loaded(tmp_path, "example.test")
    assert "example.test.key" in str(info.value) and "example.test.crt" in str(info.value)


def test_half_a_pair_is_an_error(tmp_path: Path) -> None:
    """A certificate without its key is an error even when self-signing is on: the
    operator's file is never overwritten by a generated one."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "example.test.crt").write_bytes(b"mine")
    with pytest.raises(TLSSetupError) as info:
        loaded(tmp_path, "example.test")
    assert "example.test.key is missing" in str(info.value)
    assert (certs / "example.test.crt").read_bytes() == b"mine"


@pytest.mark.parametrize("cert_data, key_data, problem", [
    (b"garbage", None, "not a PEM certificate"),
    (None, b"garbage", "not a PEM private key"),
    (None, "encrypted", "encrypted"),
])
def test_unreadable_files(tmp_path: Path, cert_data: bytes | None, key_data: Any, problem: str) -> None:
    """Files that are not PEM, and passphrase-protected keys, are one-line errors."""
    certs = tmp_path / "certs"
    key = ec.generate_private_key(ec.SECP256R1())
    write_pair(certs, "example.test.crt", "example.test.key", [make_cert("example.test", key)], key)
    if cert_data is not None:
        (certs / "example.test.crt").write_bytes(cert_data)
    if key_data == "encrypted":
        key_data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.BestAvailableEncryption(b"secret"))
    if key_data is not None:
        (certs / "example.test.key").write_bytes(key_data)
    with pytest.raises(TLSSetupError) as info:
        loaded(tmp_path, "example.test")
    assert problem in str(info.value)


def test_warnings_for_wrong_name_expired_and_readable_key(tmp_path: Path) -> None:
    """A certificate that does not name the domain, has expired, or whose key others
    can read still loads, with a warning for each."""
    certs = tmp_path / "certs"
    key = ec.generate_private_key(ec.SECP256R1())
    old = make_cert("other.test", key, names=["other.test"], not_after=NOW - datetime.timedelta(days=1))
    write_pair(certs, "example.test.crt", "example.test.key", [old], key)
    (certs / "example.test.key").chmod(0o644)
    with capturedLogs() as events:
        loaded(tmp_path, "example.test")
    formats = " | ".join(e["log_format"] for e in events)
    assert "does not name" in formats and "expired" in formats and "chmod 600" in formats


def test_certificate_without_subject_alt_name(tmp_path: Path) -> None:
    """A certificate naming the domain only in its CN (ignored by modern peers) loads
    with a warning."""
    certs = tmp_path / "certs"
    key = ec.generate_private_key(ec.SECP256R1())
    write_pair(certs, "example.test.crt", "example.test.key", [make_cert("example.test", key)], key)
    with capturedLogs() as events:
        loaded(tmp_path, "example.test")
    assert [e for e in events if "does not name" in e["log_format"]]


def test_wildcard_covers(tmp_path: Path) -> None:
    """A wildcard certificate covering the domain raises no warning."""
    certs = tmp_path / "certs"
    key = ec.generate_private_key(ec.SECP256R1())
    write_pair(certs, "chat.example.test.crt", "chat.example.test.key",
               [make_cert("x", key, names=["*.example.test"])], key)
    with capturedLogs() as events:
        loaded(tmp_path, "chat.example.test")
    assert not [e for e in events if "does not name" in e["log_format"]]


# -- serving --------------------------------------------------------------------------------------

def test_sni_selects_the_certificate(tmp_path: Path) -> None:
    """The certificate served is the one of the domain the client names (any case);
    without SNI, or for an unknown name, the first domain's."""
    store = loaded(tmp_path, "a.test", "b.test")
    assert store.domains() == ("a.test", "b.test")
    for name, expected in ((b"b.test", "b.test"), (b"B.Test", "b.test"), (b"a.test", "a.test"),
                           (None, "a.test"), (b"unknown.test", "a.test")):
        server, client = connect(store, name)
        assert xmpp_addrs(served_cert(client)) == [expected], name
        assert negotiated_server_name(server) == (name.decode().lower() if name else None)
        # The server side reports the certificate it actually served.
        own = server.get_certificate(as_cryptography=True)
        assert own is not None and own == served_cert(client)


def test_protocol_settings(tmp_path: Path) -> None:
    """TLS 1.3 by default, TLS 1.2 still allowed (with ECDHE only), TLS 1.1 refused."""
    store = loaded(tmp_path, "example.test")
    server, _ = connect(store)
    assert server.get_protocol_version_name() == "TLSv1.3"
    server, _ = connect(store, max_version=SSL.TLS1_2_VERSION)
    assert server.get_protocol_version_name() == "TLSv1.2"
    assert server.get_cipher_name().startswith("ECDHE-")
    with pytest.raises(SSL.Error):
        connect(store, max_version=SSL.TLS1_1_VERSION)


def test_alpn(tmp_path: Path) -> None:
    """With alpn, 'xmpp-client' is agreed when offered; a client offering something
    else is served without ALPN; without alpn nothing is agreed."""
    store = loaded(tmp_path, "example.test")
    server, client = connect(store, server_alpn=[b"xmpp-client"], alpn=[b"h2", b"xmpp-client"])
    assert server.get_alpn_proto_negotiated() == client.get_alpn_proto_negotiated() == b"xmpp-client"
    server, _ = connect(store, server_alpn=[b"xmpp-client"], alpn=[b"h2"])
    assert server.get_alpn_proto_negotiated() == b""
    server, _ = connect(store, alpn=[b"xmpp-client"])
    assert server.get_alpn_proto_negotiated() == b""


def test_creator_is_reused(tmp_path: Path) -> None:
    """server_creator() per connection returns one object per ALPN list."""
    store = loaded(tmp_path, "example.test")
    assert store.server_creator() is store.server_creator()
    assert store.server_creator(alpn=[b"xmpp-client"]) is store.server_creator(alpn=(b"xmpp-client",))
    assert store.server_creator() is not store.server_creator(alpn=[b"xmpp-client"])


def test_creator_before_load(tmp_path: Path) -> None:
    """Asking for TLS before load() is a programming error."""
    with pytest.raises(RuntimeError):
        CertificateStore(tmp_path, ["example.test"], self_signed=True).server_creator()


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def connectionMade(self) -> None:
        self.transport.write(b"hello over tls")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


def test_direct_tls_with_twisted(tmp_path: Path) -> None:
    """Through TLSMemoryBIOFactory (what direct TLS and startTLS use), a Twisted
    client that verifies 'b.test' against that domain's certificate (SNI) connects,
    agrees on xmpp-client and exchanges data."""
    store = loaded(tmp_path, "a.test", "b.test")
    trust = ssl.Certificate.loadPEM((tmp_path / "certs" / "b.test.crt").read_bytes())
    client_options = ssl.optionsForClientTLS("b.test", trustRoot=trust, acceptableProtocols=[b"xmpp-client"])
    clock = task.Clock()  # TLS transports batch small writes on the clock
    server_factory = TLSMemoryBIOFactory(store.server_creator(alpn=[b"xmpp-client"]), False,
                                         protocol.Factory.forProtocol(Echo), clock=clock)
    client_factory = TLSMemoryBIOFactory(client_options, True, protocol.Factory.forProtocol(Collect), clock=clock)
    client, server, io = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None), clock=clock)
    io.flush()
    assert client.wrappedProtocol.received == b"hello over tls"
    assert client.negotiatedProtocol == b"xmpp-client"
    assert not client.wrappedProtocol.lost
    assert set(channel_bindings(server.getHandle())) == {"tls-exporter", "tls-server-end-point"}

    # The client really verifies: asking for a.test while trusting only b.test fails.
    wrong = ssl.optionsForClientTLS("a.test", trustRoot=trust)
    collector = Collect()
    client_factory = TLSMemoryBIOFactory(wrong, True, protocol.Factory.forProtocol(lambda: collector), clock=clock)
    client, server, io = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None), clock=clock)
    io.flush()
    assert collector.received == b"" and collector.lost


# -- channel bindings ---------------------------------------------------------------------------

def test_channel_bindings_tls13(tmp_path: Path) -> None:
    """On TLS 1.3 the server's bindings are what the client computes: the RFC 9266
    exporter, and SHA-256 of the certificate SNI chose (RFC 5929)."""
    store = loaded(tmp_path, "a.test", "b.test")
    server, client = connect(store, b"b.test")
    bindings = channel_bindings(server)
    assert bindings["tls-exporter"] == client.export_keying_material(b"EXPORTER-Channel-Binding", 32, None)
    assert len(bindings["tls-exporter"]) == 32
    der = served_cert(client).public_bytes(serialization.Encoding.DER)
    assert bindings["tls-server-end-point"] == hashlib.sha256(der).digest()
    assert xmpp_addrs(served_cert(client)) == ["b.test"]


def test_channel_bindings_tls12(tmp_path: Path) -> None:
    """On TLS 1.2 there is no tls-exporter (RFC 9266 needs TLS 1.3 or EMS), only
    tls-server-end-point."""
    store = loaded(tmp_path, "example.test")
    server, client = connect(store, max_version=SSL.TLS1_2_VERSION)
    der = served_cert(client).public_bytes(serialization.Encoding.DER)
    assert channel_bindings(server) == {"tls-server-end-point": hashlib.sha256(der).digest()}


def test_channel_bindings_before_handshake(tmp_path: Path) -> None:
    """Before the handshake has finished there are no bindings."""
    store = loaded(tmp_path, "example.test")
    assert channel_bindings(store.server_creator().serverConnectionForTLS(object())) == {}


class FakeCert:
    def __init__(self, algorithm: hashes.HashAlgorithm | None) -> None:
        self.signature_hash_algorithm = algorithm

    def public_bytes(self, encoding: Any) -> bytes:
        return b"certificate"


@pytest.mark.parametrize("algorithm, expected", [
    (hashes.MD5(), hashlib.sha256(b"certificate").digest()),
    (hashes.SHA1(), hashlib.sha256(b"certificate").digest()),
    (hashes.SHA256(), hashlib.sha256(b"certificate").digest()),
    (hashes.SHA384(), hashlib.sha384(b"certificate").digest()),
    (hashes.SHA512(), hashlib.sha512(b"certificate").digest()),
    (None, None),
])
def test_end_point_hash_algorithm(algorithm: hashes.HashAlgorithm | None, expected: bytes | None) -> None:
    """RFC 5929 §4.1: the signature's hash, SHA-256 instead of MD5 or SHA-1, and no
    binding when the signature has no hash of its own."""
    assert _end_point_hash(FakeCert(algorithm)) == expected  # type: ignore[arg-type]


def test_ed25519_certificate_has_no_end_point_binding(tmp_path: Path) -> None:
    """An Ed25519 certificate is served, and only tls-exporter is offered with it."""
    certs = tmp_path / "certs"
    key = ed25519.Ed25519PrivateKey.generate()
    write_pair(certs, "example.test.crt", "example.test.key", [make_cert("example.test", key, names=["example.test"])],
               key)
    server, _ = connect(loaded(tmp_path, "example.test"))
    assert set(channel_bindings(server)) == {"tls-exporter"}


# -- components' domains (a gateway federates under its own name) -----------------------------

def test_component_domains_have_certificates_of_their_own(tmp_path: Path) -> None:
    """A component's domain gets a certificate like a hosted one (generated when
    self-signing is on), listed after the hosted domains, served when SNI names
    it; the hosted domain stays the default."""
    store = CertificateStore(tmp_path / "certs", ["example.test"], self_signed=True,
                             component_domains=["irc.example.test"])
    store.load()
    assert store.domains() == ("example.test", "irc.example.test")
    assert (tmp_path / "certs" / "irc.example.test.crt").is_file()
    _, client = connect(store, b"irc.example.test")
    assert xmpp_addrs(served_cert(client)) == ["irc.example.test"]
    _, client = connect(store)
    assert xmpp_addrs(served_cert(client)) == ["example.test"]


def test_missing_component_certificate_without_self_signed(tmp_path: Path) -> None:
    """With self-signing off, a component domain without a certificate stops
    start-up with one line that says it is a component's domain."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_pair(tmp_path / "certs", "example.test.crt", "example.test.key",
               [make_cert("example.test", key, names=["example.test"])], key)
    store = CertificateStore(tmp_path / "certs", ["example.test"], self_signed=False,
                             component_domains=["irc.example.test"])
    with pytest.raises(TLSSetupError) as info:
        store.load()
    message = str(info.value)
    assert "irc.example.test.crt" in message and "component" in message and "\n" not in message


def _presented_by_client(store: CertificateStore, local: str | None,
                         peer: CertificateStore) -> x509.Certificate | None:
    """The certificate that the client side of a server-to-server connection from
    our *local* domain shows a *peer* that asks for one."""
    server = peer.server_creator(request_client_cert=True).serverConnectionForTLS(object())
    server.set_accept_state()
    client = store.client_creator(local, "remote.test").clientConnectionForTLS(object())
    client.set_connect_state()
    pump(server, client)
    return server.get_peer_certificate(as_cryptography=True)


def test_outgoing_streams_present_the_from_domains_certificate(tmp_path: Path) -> None:
    """A server-to-server connection from a component's domain presents that
    domain's certificate, one from a hosted domain the hosted one's; a domain we
    hold none for presents nothing."""
    store = CertificateStore(tmp_path / "certs", ["example.test"], self_signed=True,
                             component_domains=["irc.example.test"])
    store.load()
    peer = loaded(tmp_path / "peer", "remote.test")
    presented = _presented_by_client(store, "irc.example.test", peer)
    assert presented is not None and xmpp_addrs(presented) == ["irc.example.test"]
    presented = _presented_by_client(store, "example.test", peer)
    assert presented is not None and xmpp_addrs(presented) == ["example.test"]
    assert _presented_by_client(store, "elsewhere.test", peer) is None


def test_domain_chosen_without_sni(tmp_path: Path) -> None:
    """A creator made for a domain (on STARTTLS, the stream header's 'to') serves
    that domain's certificate to a client that sends no SNI; SNI still wins, and
    an unknown domain falls back to the first."""
    store = loaded(tmp_path, "a.test", "b.test")
    for domain, name, expected in (("b.test", None, "b.test"), ("b.test", b"a.test", "a.test"),
                                   ("unknown.test", None, "a.test"), (None, None, "a.test")):
        server = store.server_creator(domain=domain).serverConnectionForTLS(object())
        server.set_accept_state()
        client = client_connection(name)
        pump(server, client)
        assert xmpp_addrs(served_cert(client)) == [expected], (domain, name)
    assert store.server_creator(domain="b.test") is store.server_creator(domain="b.test")
