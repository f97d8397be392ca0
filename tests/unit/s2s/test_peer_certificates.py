"""Our own check of a peer's certificate: chain to the configured CA (no purpose
required) and name by DNS-ID, SRV-ID or XmppAddr."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedxmpp.tls import PeerVerifier, _der_utf8string
from tests.e2e.s2s_pki import CertAuthority, self_signed


def chain(path):
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_server_auth_only_certificate_verifies(tmp_path):
    """A CA-issued certificate with only the serverAuth purpose (Let's Encrypt's
    kind) verifies for its domain when presented by a connecting server, and for
    no other domain."""
    ca = CertAuthority(tmp_path)
    cert, _ = ca.issue("peer.test", tmp_path / "c", server_auth_only=True)
    check = PeerVerifier(ca.path).check(chain(cert)[:1])
    assert check.chain_ok and check.problem == ""
    assert check.valid_for("peer.test") and not check.valid_for("other.test")
    assert check.names == ("peer.test",)


def test_untrusted_and_self_signed_do_not_verify(tmp_path):
    """A self-signed certificate, and one from a CA we were not told to trust, do
    not verify even though they name the domain."""
    ca = CertAuthority(tmp_path / "ca")
    other = CertAuthority(tmp_path / "other")
    cert, _ = other.issue("peer.test", tmp_path / "c")
    verifier = PeerVerifier(ca.path)
    check = verifier.check(chain(cert)[:1])
    assert not check.chain_ok and not check.valid_for("peer.test")
    own = verifier.check(chain(self_signed("peer.test", tmp_path / "ss")))
    assert not own.chain_ok and "self-signed" in own.problem
    assert not verifier.check([]).chain_ok


def _leaf(ca: CertAuthority, names: list[x509.GeneralName], days: int = 7) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca.key, hashes.SHA256()))


def test_srv_id_xmppaddr_and_wildcard_names(tmp_path):
    """An SRV-ID _xmpp-server.DOMAIN, an XmppAddr DOMAIN and a wildcard DNS-ID
    *.DOMAIN each name a domain (RFC 6125, RFC 6120 §13.7.1.4)."""
    ca = CertAuthority(tmp_path)
    verifier = PeerVerifier(ca.path)
    srv_id = b"_xmpp-server.srv.test"
    srv = _leaf(ca, [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7"), bytes([0x16, len(srv_id)]) + srv_id)])
    assert verifier.check([srv]).valid_for("srv.test")
    xmpp = _leaf(ca, [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5"), _der_utf8string("addr.test"))])
    assert verifier.check([xmpp]).valid_for("addr.test") and not verifier.check([xmpp]).valid_for("x.addr.test")
    wild = _leaf(ca, [x509.DNSName("*.wild.test")])
    assert verifier.check([wild]).valid_for("chat.wild.test") and not verifier.check([wild]).valid_for("wild.test")


def test_expired_certificate_does_not_verify(tmp_path):
    """A certificate past its notAfter fails the chain check, with OpenSSL's reason."""
    ca = CertAuthority(tmp_path)
    old = _leaf(ca, [x509.DNSName("old.test")], days=-1)
    check = PeerVerifier(ca.path).check([old])
    assert not check.chain_ok and "expired" in check.problem
