"""TLS for the hosted domains: certificates, server contexts with SNI, channel bindings.

:class:`CertificateStore` finds one certificate per hosted domain in the configured
directory, in either layout::

    DOMAIN.crt + DOMAIN.key                     (the chain, leaf first, in the .crt)
    DOMAIN/fullchain.pem + DOMAIN/privkey.pem   (certbot's layout; preferred when both exist)

or, when allowed, generates a self-signed one on first start (and reuses it later).
Its :meth:`~CertificateStore.server_creator` gives the object that
``transport.startTLS()`` (STARTTLS) and ``TLSMemoryBIOFactory`` (direct TLS, XEP-0368)
take: TLS 1.2 or later, ECDHE with AEAD ciphers for TLS 1.2, no compression, no
renegotiation, and the certificate chosen by the name the client asks for (SNI).

:func:`channel_bindings` gives the server side of RFC 9266 ``tls-exporter`` and
RFC 5929 ``tls-server-end-point`` for SCRAM-PLUS.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import idna
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "ID_ON_XMPPADDR", "CertificateStore", "TLSSetupError", "channel_bindings", "generate_self_signed",
    "negotiated_server_name", "xmpp_addrs",
]

log = Logger()

#: RFC 6120 §13.7.1.4: the otherName carrying an XMPP address in a certificate.
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")

SELF_SIGNED_DAYS = 365
# TLS 1.2 suites (TLS 1.3 uses OpenSSL's defaults, all AEAD): forward secrecy and AEAD only.
_TLS12_CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                  b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                  b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"


class TLSSetupError(Exception):
    """A certificate problem, already worded for the operator (one line)."""


# -- self-signed certificates ------------------------------------------------------

def generate_self_signed(domain: str, directory: Path) -> tuple[Path, Path]:
    """Write a new self-signed certificate for *domain*: ``DOMAIN.crt`` and
    ``DOMAIN.key`` (mode 0600) in *directory* (created with mode 0700 if missing).

    EC P-256, valid for a year, naming *domain* as DNS-ID and XmppAddr, for server
    and client authentication.  Existing files are replaced atomically.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate peers' clock skew
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(_a_label(domain)),
            x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(domain)),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path = directory / f"{domain}.crt"
    key_path = directory / f"{domain}.key"
    _write_atomically(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _der_utf8string(text: str) -> bytes:
    data = text.encode("utf-8")
    n = len(data)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x0c" + length + data


def _parse_der_utf8string(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != 0x0C:
        return None
    n, pos = der[1], 2
    if n & 0x80:
        width = n & 0x7F
        if not 0 < width <= 4 or len(der) < 2 + width:
            return None
        n, pos = int.from_bytes(der[2:2 + width], "big"), 2 + width
    if len(der) != pos + n:
        return None
    try:
        return der[pos:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def xmpp_addrs(cert: x509.Certificate) -> list[str]:
    """The XmppAddr identifiers (RFC 6120 §13.7.1.4) in *cert*'s subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == ID_ON_XMPPADDR:
            value = _parse_der_utf8string(other.value)
            if value is not None:
                out.append(value)
    return out


def _a_label(domain: str) -> str:
    """*domain* in the ASCII form that SNI and DNS-IDs carry."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain.lower()


# -- the store -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Credentials:
    domain: str
    cert_path: Path
    key_path: Path
    chain: tuple[x509.Certificate, ...]
    key: object  # a cryptography private key


class CertificateStore:
    """The certificates of the hosted domains, loaded once by :meth:`load`."""

    def __init__(self, directory: Path, domains: Sequence[str], *, self_signed: bool) -> None:
        if not domains:
            raise ValueError("CertificateStore needs at least one domain")
        self._directory = Path(directory)
        self._domains = tuple(domains)
        self._self_signed = self_signed
        self._credentials: dict[str, _Credentials] = {}
        self._creators: dict[tuple[bytes, ...], _ServerCreator] = {}

    def domains(self) -> tuple[str, ...]:
        """The hosted domains, the default (no or unknown SNI) first."""
        return self._domains

    def load(self) -> None:
        """Find, check (or generate) the certificate of every hosted domain.

        Synchronous: called once at start-up, before the reactor runs.
        Raises :class:`TLSSetupError`.
        """
        credentials = {}
        for domain in self._domains:
            paths = self._find(domain)
            if paths is None:
                if not self._self_signed:
                    raise TLSSetupError(
                        f"{self._directory}: no certificate for {domain} (expected {domain}.crt and "
                        f"{domain}.key, or {domain}/fullchain.pem and {domain}/privkey.pem; or set "
                        f"tls.self_signed = true)")
                try:
                    paths = generate_self_signed(domain, self._directory)
                except OSError as e:
                    raise TLSSetupError(
                        f"{self._directory}: cannot write a self-signed certificate for {domain}: "
                        f"{e.strerror or e}") from None
                log.warn("Generated a self-signed certificate for {domain} in {path}; clients will not "
                         "trust it unless told to", domain=domain, path=str(paths[0]))
            credentials[domain] = _load_pair(domain, *paths)
        self._credentials = credentials
        self._creators.clear()

    def _find(self, domain: str) -> tuple[Path, Path] | None:
        layouts = [
            (self._directory / domain / "fullchain.pem", self._directory / domain / "privkey.pem"),
            (self._directory / f"{domain}.crt", self._directory / f"{domain}.key"),
        ]
        found = []
        for cert, key in layouts:
            if cert.is_file() and key.is_file():
                found.append((cert, key))
            elif cert.exists() != key.exists():
                present, missing = (cert, key) if cert.exists() else (key, cert)
                raise TLSSetupError(f"{present}: found for {domain}, but {missing} is missing")
        if len(found) > 1:
            log.warn("Both {used} and {ignored} exist for {domain}; using {used}",
                     used=str(found[0][0]), ignored=str(found[1][0]), domain=domain)
        return found[0] if found else None

    def server_creator(self, *, alpn: Sequence[bytes] = ()) -> IOpenSSLServerConnectionCreator:
        """What ``transport.startTLS()`` and ``TLSMemoryBIOFactory`` take for the server
        side.  *alpn* lists the protocols to agree on, e.g. ``[b"xmpp-client"]`` for
        direct TLS; a client offering none of them is served without ALPN.

        The same object is returned for the same *alpn*, so calling this per connection
        is cheap and TLS sessions can be resumed.
        """
        if not self._credentials:
            raise RuntimeError("CertificateStore.load() has not been called")
        key = tuple(alpn)
        creator = self._creators.get(key)
        if creator is None:
            contexts: dict[str, SSL.Context] = {}
            for domain in self._domains:
                ctx = _server_context(self._credentials[domain], key)
                contexts[domain] = contexts[_a_label(domain)] = ctx
            creator = self._creators[key] = _ServerCreator(contexts, contexts[self._domains[0]])
        return creator


def _load_pair(domain: str, cert_path: Path, key_path: Path) -> _Credentials:
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_path.read_bytes()))
    except OSError as e:
        raise TLSSetupError(f"{cert_path}: cannot read: {e.strerror or e}") from None
    except ValueError:
        raise TLSSetupError(f"{cert_path}: not a PEM certificate") from None
    try:
        key_data = key_path.read_bytes()
    except OSError as e:
        raise TLSSetupError(f"{key_path}: cannot read: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TLSSetupError(f"{key_path}: the private key is encrypted; store it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSSetupError(f"{key_path}: not a PEM private key") from None
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise TLSSetupError(f"{key_path}: this private key does not belong to the certificate {cert_path}")
    if key_path.stat().st_mode & 0o077:
        log.warn("{path}: the private key can be read by other users (chmod 600 it)", path=str(key_path))
    if not _covers(leaf, domain):
        log.warn("{path}: the certificate does not name {domain}; clients and servers will reject it",
                 path=str(cert_path), domain=domain)
    now = datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc < now:
        log.warn("{path}: the certificate for {domain} expired on {date}", path=str(cert_path), domain=domain,
                 date=leaf.not_valid_after_utc.date().isoformat())
    elif leaf.not_valid_before_utc > now:
        log.warn("{path}: the certificate for {domain} is not valid before {date}", path=str(cert_path),
                 domain=domain, date=leaf.not_valid_before_utc.isoformat())
    return _Credentials(domain, cert_path, key_path, chain, key)


def _covers(cert: x509.Certificate, domain: str) -> bool:
    try:
        verify_certificate_hostname(cert, _a_label(domain))
        return True
    except (VerificationError, CertificateError, ValueError):
        pass
    return any(addr.lower() == domain for addr in xmpp_addrs(cert))


def _server_context(credentials: _Credentials, alpn: tuple[bytes, ...]) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    # Idle connections give their read/write buffers back (about 17 KiB each).
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ctx.set_cipher_list(_TLS12_CIPHERS)
    ctx.use_certificate(credentials.chain[0])
    for intermediate in credentials.chain[1:]:
        ctx.add_extra_chain_cert(intermediate)
    ctx.use_privatekey(credentials.key)  # type: ignore[arg-type]
    ctx.check_privatekey()
    # Sessions resume only under the certificate (domain) they were made with.
    ctx.set_session_id(hashlib.sha256(credentials.domain.encode()).digest())
    if alpn:
        ctx.set_alpn_select_callback(_alpn_selector(alpn))
    return ctx


def _alpn_selector(ours: tuple[bytes, ...]) -> Callable[[SSL.Connection, list[bytes]], bytes]:
    def select(connection: SSL.Connection, offered: list[bytes]) -> bytes:
        for protocol in ours:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]
    return select


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    """Server connections that switch to the requested domain's context (SNI)."""

    def __init__(self, contexts: dict[str, SSL.Context], default: SSL.Context) -> None:
        self._contexts = contexts
        self._default = default
        for ctx in set(contexts.values()):
            ctx.set_tlsext_servername_callback(self._server_name)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._default, None)

    def _server_name(self, connection: SSL.Connection) -> None:
        name = negotiated_server_name(connection)
        if name is None:
            return
        ctx = self._contexts.get(name)
        if ctx is not None and ctx is not connection.get_context():
            connection.set_context(ctx)


# -- after the handshake -------------------------------------------------------------

def negotiated_server_name(connection: SSL.Connection) -> str | None:
    """The name the client asked for with SNI (lower case, A-labels), if any."""
    raw = connection.get_servername()
    if not raw:
        return None
    return raw.decode("ascii", "replace").lower().rstrip(".") or None


def channel_bindings(connection: SSL.Connection) -> dict[str, bytes]:
    """The channel bindings of a finished server-side handshake, by type name.

    ``tls-exporter`` (RFC 9266) only on TLS 1.3, where it is secure;
    ``tls-server-end-point`` (RFC 5929 §4.1) hashes the certificate we served (the
    one SNI chose) with its signature's hash, SHA-256 in place of MD5 or SHA-1, and
    is left out when that hash is undefined (e.g. Ed25519).  Empty before the
    handshake has finished.
    """
    if connection.get_peer_finished() is None:
        return {}
    out: dict[str, bytes] = {}
    if connection.get_protocol_version_name() == "TLSv1.3":
        out["tls-exporter"] = connection.export_keying_material(_EXPORTER_LABEL, 32, None)
    cert = connection.get_certificate(as_cryptography=True)
    if cert is not None:
        digest = _end_point_hash(cert)
        if digest is not None:
            out["tls-server-end-point"] = digest
    return out


def _end_point_hash(cert: x509.Certificate) -> bytes | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return digest.finalize()
