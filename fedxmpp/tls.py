"""TLS for the domains we serve: certificates, server contexts with SNI, channel bindings.

:class:`CertificateStore` finds one certificate per hosted domain, and per component
domain (a gateway federates under its own name, so it needs its own certificate),
in the configured directory, in either layout::

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
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "ID_ON_XMPPADDR", "CertificateStore", "PeerCheck", "PeerVerifier", "TLSSetupError", "channel_bindings",
    "anonymous_client_creator", "generate_self_signed", "negotiated_server_name", "peer_chain", "xmpp_addrs",
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
    """The certificates of the hosted domains and of the components' domains,
    loaded once by :meth:`load`.

    A component's domain is served like a hosted one: its certificate is what a
    remote server sees on the streams that domain opens (the client side of
    server-to-server TLS) and, chosen by SNI, on the streams remote servers open
    to it.
    """

    def __init__(self, directory: Path, domains: Sequence[str], *, self_signed: bool,
                 component_domains: Sequence[str] = ()) -> None:
        if not domains:
            raise ValueError("CertificateStore needs at least one domain")
        self._directory = Path(directory)
        self._domains = tuple(dict.fromkeys((*domains, *component_domains)))
        self._components = frozenset(component_domains) - frozenset(domains)
        self._self_signed = self_signed
        self._credentials: dict[str, _Credentials] = {}
        self._server_contexts: dict[tuple[tuple[bytes, ...], bool], dict[str, SSL.Context]] = {}
        self._creators: dict[tuple[tuple[bytes, ...], bool, str], _ServerCreator] = {}
        self._client_contexts: dict[tuple[str | None, tuple[bytes, ...]], SSL.Context] = {}

    def domains(self) -> tuple[str, ...]:
        """Every domain with a certificate: the hosted ones, the default (no or
        unknown SNI) first, then the components'."""
        return self._domains

    def load(self) -> None:
        """Find, check (or generate) the certificate of every domain.

        Synchronous: called at start-up, before the reactor runs, and again on
        reload.  Raises :class:`TLSSetupError`, keeping what was loaded before.
        A reload swaps the contexts inside the creators already handed out (the
        direct TLS listeners hold theirs), so every new handshake gets the new
        certificates; established connections keep theirs.
        """
        credentials = {}
        for domain in self._domains:
            paths = self._find(domain)
            if paths is None:
                if not self._self_signed:
                    what = " (a component's domain: it federates with a certificate of its own)" \
                        if domain in self._components else ""
                    raise TLSSetupError(
                        f"{self._directory}: no certificate for {domain}{what} (expected {domain}.crt and "
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
        self._server_contexts = {key: self._build_contexts(*key) for key in self._server_contexts}
        for (alpn, request_client_cert, default), creator in self._creators.items():
            creator.replace(self._server_contexts[(alpn, request_client_cert)][default])
        self._client_contexts.clear()

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

    def server_creator(self, *, alpn: Sequence[bytes] = (), request_client_cert: bool = False,
                       domain: str | None = None) -> IOpenSSLServerConnectionCreator:
        """What ``transport.startTLS()`` and ``TLSMemoryBIOFactory`` take for the server
        side.  *alpn* lists the protocols to agree on, e.g. ``[b"xmpp-client"]`` for
        direct TLS; a client offering none of them is served without ALPN.

        The certificate is the one of the domain the client names with SNI; without
        SNI (or for a name we do not serve), the one of *domain* — on STARTTLS, the
        stream header has already said which domain the peer wants (some servers,
        Prosody among them, send no SNI on STARTTLS) — else the first hosted domain's.

        With *request_client_cert* (server-to-server) the peer is asked for its
        certificate, and any certificate, or none, lets the handshake finish: the
        caller checks it afterwards with :class:`PeerVerifier` (OpenSSL's own check
        would refuse server-auth-only certificates, which S2S must accept).

        The same object is returned for the same arguments, so calling this per
        connection is cheap and TLS sessions can be resumed.
        """
        if not self._credentials:
            raise RuntimeError("CertificateStore.load() has not been called")
        contexts_key = (tuple(alpn), request_client_cert)
        contexts = self._server_contexts.get(contexts_key)
        if contexts is None:
            contexts = self._server_contexts[contexts_key] = self._build_contexts(*contexts_key)
        default = domain if domain in contexts else self._domains[0]
        key = (*contexts_key, default)
        creator = self._creators.get(key)
        if creator is None:
            creator = self._creators[key] = _ServerCreator(contexts[default])
        return creator

    def _build_contexts(self, alpn: tuple[bytes, ...], request_client_cert: bool) -> dict[str, SSL.Context]:
        """A server context per domain (and per A-label), switched between by SNI."""
        contexts: dict[str, SSL.Context] = {}
        for name in self._domains:
            ctx = _server_context(self._credentials[name], alpn)
            if request_client_cert:
                ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
            contexts[name] = contexts[_a_label(name)] = ctx
        for ctx in set(contexts.values()):
            ctx.set_tlsext_servername_callback(_sni_switcher(contexts))
        return contexts

    def client_creator(self, domain: str | None, server_name: str, *,
                       alpn: Sequence[bytes] = ()) -> IOpenSSLClientConnectionCreator:
        """The client side of a server-to-server connection from our *domain* (whose
        certificate is presented when we have one) to *server_name* (sent as SNI).

        OpenSSL does not judge the peer's certificate: the caller does, after the
        handshake, with :class:`PeerVerifier`, so that a failed check can fall back
        to dialback instead of losing the connection.
        """
        if not self._credentials:
            raise RuntimeError("CertificateStore.load() has not been called")
        credentials = self._credentials.get(domain) if domain is not None else None
        key = (credentials.domain if credentials is not None else None, tuple(alpn))
        ctx = self._client_contexts.get(key)
        if ctx is None:
            ctx = self._client_contexts[key] = _client_context(credentials, key[1])
        return _ClientCreator(ctx, _a_label(server_name))


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
    # TLS 1.2: our order of _TLS12_CIPHERS decides, not the client's.
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
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


def _accept_any(connection: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    return True


def _client_context(credentials: _Credentials | None, alpn: tuple[bytes, ...]) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ctx.set_cipher_list(_TLS12_CIPHERS)
    ctx.set_verify(SSL.VERIFY_NONE, _accept_any)
    if credentials is not None:
        ctx.use_certificate(credentials.chain[0])
        for intermediate in credentials.chain[1:]:
            ctx.add_extra_chain_cert(intermediate)
        ctx.use_privatekey(credentials.key)  # type: ignore[arg-type]
        ctx.check_privatekey()
    if alpn:
        ctx.set_alpn_protos(list(alpn))
    return ctx


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    """Client connections asking for *server_name* with SNI."""

    def __init__(self, context: SSL.Context, server_name: str) -> None:
        self._context = context
        self._server_name = server_name

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_tlsext_host_name(self._server_name.encode("ascii", "replace"))
        return connection


def _alpn_selector(ours: tuple[bytes, ...]) -> Callable[[SSL.Connection, list[bytes]], bytes]:
    def select(connection: SSL.Connection, offered: list[bytes]) -> bytes:
        for protocol in ours:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]
    return select


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    """Server connections starting with one domain's context; SNI may switch it."""

    def __init__(self, default: SSL.Context) -> None:
        self._default = default

    def replace(self, default: SSL.Context) -> None:
        """Start new handshakes with *default* (a reload); current ones are unaffected."""
        self._default = default

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._default, None)


def _sni_switcher(contexts: dict[str, SSL.Context]) -> Callable[[SSL.Connection], None]:
    """The SNI callback: switch to the context of the requested domain, if ours."""
    def switch(connection: SSL.Connection) -> None:
        name = negotiated_server_name(connection)
        if name is None:
            return
        ctx = contexts.get(name)
        if ctx is not None and ctx is not connection.get_context():
            connection.set_context(ctx)
    return switch


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


# -- peers' certificates (server-to-server) ---------------------------------------------

@dataclass(frozen=True)
class PeerCheck:
    """What a peer's certificate proves: *chain_ok* (it chains to a trusted CA and is
    within its validity), and the *names* it may authenticate as (A-labels and
    XmppAddrs, lower case; ``*.`` for wildcards).  *problem* says why it does not
    verify, worded for a log line."""

    chain_ok: bool
    problem: str
    names: tuple[str, ...] = ()
    not_after: datetime.datetime | None = None
    _certificate: x509.Certificate | None = None

    def valid_for(self, domain: str) -> bool:
        """The chain verifies and the certificate names *domain* (RFC 6125: DNS-ID,
        SRV-ID ``_xmpp-server.``, or RFC 6120 XmppAddr)."""
        if not self.chain_ok or self._certificate is None:
            return False
        return _names_domain(self._certificate, domain)


class PeerVerifier:
    """Checks peers' certificates ourselves, after the handshake.

    Trust comes from *ca_file* when given (only those CAs), else from the system's CA
    store.  No purpose (extended key usage) is required: a server presenting a
    server-auth-only certificate on its outgoing connection (Let's Encrypt since 2026)
    is accepted, as S2S needs.
    """

    def __init__(self, ca_file: Path | None = None) -> None:
        from OpenSSL import crypto

        store = crypto.X509Store()
        if ca_file is not None:
            try:
                store.load_locations(str(ca_file))
            except (crypto.Error, SSL.Error, OSError) as e:
                raise TLSSetupError(f"{ca_file}: cannot load CA certificates: {e}") from None
            self.source = str(ca_file)
        else:
            paths = _system_ca_paths()
            loaded = False
            for cafile, capath in paths:
                try:
                    store.load_locations(cafile, capath)
                    loaded = True
                except (crypto.Error, SSL.Error, OSError):
                    continue
            if not loaded:
                log.warn("No system CA certificates found; peers' certificates will not verify")
            self.source = "the system's CA store"
        self._store = store

    def check(self, chain: Sequence[x509.Certificate]) -> PeerCheck:
        """Verify *chain* (the peer's leaf first, then what else it sent)."""
        from OpenSSL import crypto

        if not chain:
            return PeerCheck(False, "no certificate presented")
        leaf = chain[0]
        names = _certificate_names(leaf)
        untrusted = [crypto.X509.from_cryptography(c) for c in chain[1:] if c != leaf]
        try:
            crypto.X509StoreContext(self._store, crypto.X509.from_cryptography(leaf), untrusted).verify_certificate()
        except crypto.X509StoreContextError as e:
            return PeerCheck(False, str(e.args[0] if e.args else e), names, leaf.not_valid_after_utc, leaf)
        return PeerCheck(True, "", names, leaf.not_valid_after_utc, leaf)


def _system_ca_paths() -> list[tuple[str | None, str | None]]:
    import ssl

    paths = ssl.get_default_verify_paths()
    out: list[tuple[str | None, str | None]] = []
    for cafile, capath in ((paths.cafile, paths.capath), (paths.openssl_cafile, paths.openssl_capath)):
        file = cafile if cafile and os.path.isfile(cafile) else None
        path = capath if capath and os.path.isdir(capath) else None
        if file or path:
            out.append((file, path))
    return out


def peer_chain(connection: SSL.Connection) -> list[x509.Certificate]:
    """The certificates the peer presented, its leaf first (empty if none)."""
    leaf = connection.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    rest = connection.get_peer_cert_chain(as_cryptography=True) or []
    return [leaf] + [c for c in rest if c != leaf]


def _certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    out: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        out.extend(name.lower() for name in san.get_values_for_type(x509.DNSName))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == _ID_ON_DNS_SRV:
                srv = _parse_der_ia5string(other.value)
                if srv:
                    out.append(srv.lower())
    out.extend(addr.lower() for addr in xmpp_addrs(cert))
    return tuple(dict.fromkeys(out))


# RFC 4985: the otherName carrying an SRV-ID (e.g. "_xmpp-server.example.org").
_ID_ON_DNS_SRV = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7")


def _parse_der_ia5string(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != 0x16 or der[1] & 0x80 or len(der) != 2 + der[1]:
        return None
    try:
        return der[2:].decode("ascii")
    except UnicodeDecodeError:
        return None


def _names_domain(cert: x509.Certificate, domain: str) -> bool:
    from service_identity.cryptography import extract_patterns
    from service_identity.hazmat import DNS_ID, SRV_ID

    a_label = _a_label(domain)
    try:
        patterns = extract_patterns(cert)
    except (CertificateError, ValueError):
        patterns = []
    try:
        wanted: list[DNS_ID | SRV_ID] = [DNS_ID(a_label), SRV_ID(f"_xmpp-server.{a_label}")]
    except (ValueError, CertificateError):
        wanted = []
    for pattern in patterns:
        for ident in wanted:
            try:
                if ident.verify(pattern):
                    return True
            except (CertificateError, ValueError):
                continue
    return any(addr.lower() == domain for addr in xmpp_addrs(cert))


def anonymous_client_creator(server_name: str, *, alpn: Sequence[bytes] = ()) -> IOpenSSLClientConnectionCreator:
    """A client side presenting no certificate, asking for *server_name* with SNI and
    leaving the peer's certificate for the caller to judge (``fedxmpp check``)."""
    return _ClientCreator(_client_context(None, tuple(alpn)), _a_label(server_name))
