"""A throw-away certificate authority for the federation tests (cryptography only).

:class:`CertAuthority` issues leaf certificates for XMPP domains the way public CAs do:
a DNS-ID (and, optionally, an XmppAddr), EC P-256, and either both extended key
usages or — like Let's Encrypt since 2026 — server authentication only.  A leaf is
written into a fedxmpp certificates directory as ``DOMAIN.crt`` (leaf, then the
CA, so that a client told to trust that file trusts the CA) and ``DOMAIN.key``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedxmpp.tls import ID_ON_XMPPADDR, _der_utf8string

PEM = serialization.Encoding.PEM


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


class CertAuthority:
    def __init__(self, root: Path, name: str = "fedxmpp test CA") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = root / "ca.crt"
        self.path.write_bytes(self.cert.public_bytes(PEM))

    def issue(self, domain: str, directory: Path, *, server_auth_only: bool = False, xmpp_addr: bool = False,
              stem: str | None = None) -> tuple[Path, Path]:
        """A leaf for *domain* written as DIRECTORY/STEM.crt (+ the CA) and STEM.key."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(domain)]
        if xmpp_addr:
            names.append(x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(domain)))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_auth_only else \
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = stem or domain
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(PEM) + self.cert.public_bytes(PEM))
        _write_key(key, key_path)
        return cert_path, key_path


def self_signed(domain: str, directory: Path) -> Path:
    """fedxmpp's own first-start self-signed certificate for *domain* (no CA trusts it)."""
    from fedxmpp.tls import generate_self_signed

    cert, _key = generate_self_signed(domain, directory)
    return cert
