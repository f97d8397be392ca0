"""The server's configuration: one frozen dataclass per TOML section.

Only this module reads TOML.  Every default and every validation message lives
here; a problem becomes a :class:`ConfigError` whose text is one line naming the
file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from fedxmpp.xml.jid import JID, InvalidJID, prep_domain

EMBEDDED = "<embedded defaults>"


class ConfigError(Exception):
    """A configuration problem, already worded for the operator (one line)."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "fedxmpp"


@dataclass(frozen=True)
class ServerConfig:
    domains: tuple[str, ...] = ("localhost",)
    data_dir: Path = field(default_factory=default_data_dir)
    # The local admin socket (UNIX, mode 0600) through which the fedxmpp command
    # reaches a running server.  Empty means "<data_dir>/admin.sock", filled in by load().
    admin_socket: Path = Path()
    # The listen backlog of every TCP listener whose endpoint string sets none
    # (the kernel caps it at net.core.somaxconn).
    listen_backlog: int = 511
    # Bare JIDs of the hosted domains' users who may run the XEP-0133 service
    # administration commands (XEP-0050 ad-hoc commands).
    admins: tuple[str, ...] = ()
    # The server's secret, from which dialback keys and the SCRAM answers for
    # unknown users are derived.  Empty means "<data_dir>/server.key", created on
    # first start; a path given here must exist (give every node of a cluster
    # the same file).
    secret_file: Path = Path()
    # Started as root: the user (and group; empty = the user's own) to switch to
    # once every listener is bound.  Empty: no switch.
    user: str = ""
    group: str = ""


@dataclass(frozen=True)
class StorageConfig:
    # Empty means "sqlite in data_dir", filled in by load().
    url: str = ""
    # PostgreSQL: connections (and threads running transactions) at most.
    pool_size: int = 8


@dataclass(frozen=True)
class TLSConfig:
    # Empty means "<data_dir>/certs", filled in by load().
    certificates: Path = Path()
    # Generate a self-signed certificate for a hosted domain that has none.
    self_signed: bool = True


@dataclass(frozen=True)
class AuthConfig:
    scram_iterations: int = 10000
    # PLAIN is only ever offered over TLS; this switch removes it altogether.
    allow_plain: bool = True
    max_attempts: int = 3
    # Characters a new password must have at least (fedxmpp adduser/passwd, XEP-0077).
    min_password_length: int = 8
    # Failed authentications per client address (an IPv6 address: its /64): the
    # n-th failure within block_time is answered after failure_delay * 2^(n-1)
    # seconds (at most 8 * failure_delay; 0 = at once); at block_after failures the
    # address gets <temporary-auth-failure/> without a check for block_time seconds.
    failure_delay: float = 0.5
    block_after: int = 20
    block_time: float = 3600.0
    # Failed authentications per account, from any address: at this many within
    # block_time, password logins to the account are refused for block_time
    # seconds, except from addresses that logged in to it before (0 = off).
    account_block_after: int = 50


@dataclass(frozen=True)
class C2SConfig:
    listen: tuple[str, ...] = ("tcp:5222",)
    direct_tls: tuple[str, ...] = ("tcp:5223",)
    # Seconds a connection may take from TCP accept to a bound resource.
    auth_timeout: float = 60.0
    # Seconds of silence after which a session is closed (0 = never).
    idle_timeout: float = 600.0
    # Seconds between whitespace keepalives sent to a quiet session (0 = off).
    keepalive_interval: float = 60.0
    # XEP-0198 stream management: seconds a session whose connection died stays
    # resumable (0 = acks only, no resumption).
    sm_resume_timeout: float = 300.0
    # Unacknowledged stanzas kept per session; more closes the stream.
    sm_max_queue: int = 1000
    # Ask the client for an ack after this many unacknowledged stanzas...
    sm_ack_request_every: int = 5
    # ...or this many seconds after the first one (0 = by count only).
    sm_ack_request_delay: float = 30.0
    # Seconds an <r/> may go unanswered before the connection counts as dead and the
    # session hibernates (0 = wait for TCP or idle_timeout).
    sm_max_ack_delay: float = 60.0
    # XEP-0352 client state indication: updates held per inactive client (one
    # per contact, the latest); more flushes them all.
    csi_max_held: int = 500


@dataclass(frozen=True)
class LimitsConfig:
    max_stanza_size: int = 262144
    max_depth: int = 64
    # Bytes queued for a slow reader before the session is closed.
    max_send_buffer: int = 4 * 1024 * 1024
    # Backpressure: a client whose stanzas go to a stream that cannot take more (its
    # peer does not read) is not read until that stream drains.  A stream that keeps
    # senders waiting this many seconds without draining is closed with
    # <resource-constraint/> (so two clients flooding each other cannot deadlock).
    max_send_stall: float = 30.0
    # Shapers: bytes per second read from one connection, with a burst (a token
    # bucket).  Beyond it the server reads from that connection more slowly; it is
    # not an error.  0 = not shaped.  A person's client sends a few KB/s, and at
    # most a few max-size stanzas at once (avatars, bookmarks, a MAM sync's
    # queries); 1 MiB/s is about a thousand 1 KB messages/s, a tenth of what one
    # server routes (bench/), so no single connection can take it all.
    c2s_rate: int = 1024 * 1024
    c2s_burst: int = 1024 * 1024
    # A server-to-server link carries many users' traffic: twice a client's.
    s2s_rate: int = 2 * 1024 * 1024
    s2s_burst: int = 4 * 1024 * 1024
    # Components are the operator's own gateways, relaying for many users: not
    # shaped unless asked.
    component_rate: int = 0
    component_burst: int = 4 * 1024 * 1024
    # Client connections per address (an IPv6 address: its /64): at most this
    # many open at once, and new ones at most connection_rate_per_address per
    # second after a burst of connection_burst_per_address; more are closed at
    # accept.  0 = no bound.  exempt_addresses (networks) are not counted.
    max_connections_per_address: int = 100
    connection_rate_per_address: float = 5.0
    connection_burst_per_address: int = 50
    exempt_addresses: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


ROSTER_PRIVILEGES = ("none", "get", "set", "both")
MESSAGE_PRIVILEGES = ("none", "outgoing")


@dataclass(frozen=True)
class PrivilegesConfig:
    """XEP-0356 permissions of one component over the users of every hosted domain."""

    # Read and/or change users' rosters (jabber:iq:roster to a user's bare JID).
    roster: str = "none"
    # Send messages on behalf of users (a <forwarded/> message to the server).
    message: str = "none"


@dataclass(frozen=True)
class ComponentConfig:
    """One XEP-0114 component, an entry of ``[[components.component]]``."""

    domain: str = ""
    # Exactly one of the two; load() reads secret_file into secret.  Never printed.
    secret: str = field(default="", repr=False)
    secret_file: Path = Path()
    # A second connection for the domain replaces the first instead of being refused.
    replace: bool = False
    # The name shown in the server's disco#items (default: the domain).
    name: str = ""
    privileges: PrivilegesConfig = field(default_factory=PrivilegesConfig)


@dataclass(frozen=True)
class ComponentsConfig:
    # Listeners for components; opened only when at least one component is configured.
    listen: tuple[str, ...] = ("tcp:5347:interface=127.0.0.1",)
    # Seconds from TCP accept to a completed handshake.
    handshake_timeout: float = 30.0
    # Seconds of silence after which a component is disconnected (0 = never).
    idle_timeout: float = 0.0
    # Seconds between whitespace keepalives sent to a quiet component (0 = off).
    keepalive_interval: float = 60.0
    component: tuple[ComponentConfig, ...] = ()

    def get(self, domain: str) -> ComponentConfig | None:
        for component in self.component:
            if component.domain == domain:
                return component
        return None


@dataclass(frozen=True)
class FeaturesConfig:
    """Settings of the everyday server XEPs (fedxmpp.features)."""

    # XEP-0092: name the operating system in the server's software version.
    version_os: bool = False
    # XEP-0054: the largest vCard a user may store, in bytes (as serialised).
    vcard_max_size: int = 65536
    # XEP-0049: the largest private XML element a user may store, in bytes.
    private_max_size: int = 65536
    # XEP-0049: how many private XML elements (one per namespace) a user may keep.
    private_max_items: int = 64
    # XEP-0191: how many addresses a user's blocklist may hold.
    blocklist_max_items: int = 1000


@dataclass(frozen=True)
class RegistrationConfig:
    """XEP-0077 in-band registration of new accounts (changing one's password and
    removing one's account are always available to authenticated users)."""

    enabled: bool = False
    # Accounts one IP address may create in `period` seconds.
    max_per_ip: int = 3
    period: float = 3600.0


@dataclass(frozen=True)
class IMConfig:
    """RFC 6121 instant messaging: rosters and offline messages (XEP-0160)."""

    # Messages kept per user while no resource is available (0 = no offline storage:
    # such messages are answered with <service-unavailable/>).
    offline_quota: int = 1000
    # Items one roster may hold, pending subscription requests included.
    max_roster_items: int = 1000


@dataclass(frozen=True)
class S2SConfig:
    """Server-to-server federation (fedxmpp.s2s)."""

    # Listeners for remote servers: STARTTLS ports, and XEP-0368 direct TLS ports.
    listen: tuple[str, ...] = ("tcp:5269",)
    direct_tls: tuple[str, ...] = ()
    # TLS on every S2S stream, both directions (a peer without it is refused).
    require_encryption: bool = True
    # Peers' certificates must verify (chain + name); false lets dialback
    # authenticate peers whose certificates do not.
    verify_certificates: bool = True
    # CA certificates (PEM) that peers' certificates must chain to; empty: the system's.
    ca_file: Path = Path()
    # DNS servers for SRV and address lookups, "ADDRESS" or "ADDRESS:PORT"; empty: the system's.
    nameservers: tuple[str, ...] = ()
    # Static routes, domain -> "tcp:HOST:PORT" (STARTTLS) or "tls:HOST:PORT" (direct TLS).
    routes: dict[str, str] = field(default_factory=dict)
    # Seconds for one TCP connection attempt to one target.
    connect_timeout: float = 10.0
    # Seconds from TCP connection to an authenticated stream, either direction.
    auth_timeout: float = 30.0
    # Seconds a stanza may wait for its connection before it bounces <remote-server-timeout/>.
    send_timeout: float = 60.0
    # Seconds without traffic after which a stream is closed (0 = never).
    idle_timeout: float = 600.0
    # Stanzas waiting per remote domain while its connection is set up.
    queue_size: int = 1000


ARCHIVE_PREFS = ("always", "never", "roster")


@dataclass(frozen=True)
class ArchiveConfig:
    """XEP-0313 message archives of 1:1 messages, per user."""

    # Days an archived message is kept (0 = for ever); older ones are purged hourly.
    retention_days: int = 365
    # What is archived for a user who has not set preferences: "always", "never"
    # or "roster" (only messages with contacts in the user's roster).
    default_prefs: str = "always"
    # The most messages one query returns (a client asking for more gets this many).
    max_page: int = 250


@dataclass(frozen=True)
class PepConfig:
    """XEP-0163 personal eventing: each user's pubsub nodes."""

    # Nodes one account may have.
    max_nodes: int = 256
    # Items one node may keep: the meaning of pubsub#max_items = 'max', and its upper bound.
    max_items: int = 1000
    # The largest item payload, in bytes as serialised.
    max_item_size: int = 262144


EXTERNAL_SERVICE_TYPES = ("stun", "stuns", "turn", "turns")
EXTERNAL_SERVICE_TRANSPORTS = ("udp", "tcp")


@dataclass(frozen=True)
class ExternalServiceConfig:
    """One STUN or TURN server, an entry of ``[[external_services.service]]``."""

    type: str = ""
    host: str = ""
    # 0 = the type's standard port (3478 for stun/turn, 5349 for stuns/turns).
    port: int = 0
    transport: str = "udp"
    name: str = ""


@dataclass(frozen=True)
class ExternalServicesConfig:
    """XEP-0215 external service discovery: STUN/TURN servers for the users' calls."""

    # The TURN server's shared secret (coturn: use-auth-secret, static-auth-secret);
    # exactly one of the two when a turn/turns service is listed.  Never printed.
    secret: str = field(default="", repr=False)
    secret_file: Path = Path()
    # Seconds TURN credentials stay valid after they are handed out.
    credential_lifetime: int = 86400
    service: tuple[ExternalServiceConfig, ...] = ()


@dataclass(frozen=True)
class Proxy65Config:
    """XEP-0065 SOCKS5 bytestreams proxy at a domain of its own (off while domain is empty)."""

    domain: str = ""
    # Listeners for the SOCKS5 connections (Twisted endpoint strings).
    listen: tuple[str, ...] = ()
    # Where clients connect, as told in the streamhost answer.  Empty: the domain;
    # 0: the port of the first listen entry.
    host: str = ""
    port: int = 0
    # Bytes per second relayed per stream and direction (0 = not limited).
    rate: int = 10 * 1024 * 1024
    # SOCKS5 connections open at once, waiting or relaying (two per stream).
    max_connections: int = 200
    # Streams one user (bare JID) may have activated at once.
    max_streams_per_user: int = 10
    # Seconds a connection may wait for its peer and the activation.
    pending_timeout: float = 60.0
    # Seconds without a byte either way after which a stream is closed.
    idle_timeout: float = 300.0


@dataclass(frozen=True)
class HttpConfig:
    """The one HTTP listener (HTTP upload; later BOSH and WebSocket)."""

    # Plain HTTP listeners (behind a TLS reverse proxy, or for tests); none by default.
    listen: tuple[str, ...] = ()
    # HTTPS listeners with the hosted domains' certificates (SNI).
    tls_listen: tuple[str, ...] = ()
    # How clients reach the listener, e.g. "https://example.com:5281" (in announced URLs).
    public_url: str = ""
    # Addresses or networks of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: tuple[str, ...] = ()


LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogConfig:
    """What the server logs (where is twistd's choice: --logfile, stdout with -n, --syslog)."""

    # The least severe events written: "debug", "info", "warn" or "error".
    level: str = "info"
    # "text" (twistd's lines) or "json" (one JSON object per line).
    format: str = "text"


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics at ``/metrics`` on the HTTP listener, and on listeners of
    their own (for a server without an HTTP listener)."""

    # Plain HTTP listeners that serve only /metrics; none by default.
    listen: tuple[str, ...] = ()
    # Addresses or networks allowed to read the metrics (they reveal how many users
    # are online); anyone else gets 403.  Behind a trusted proxy ([http]
    # trusted_proxies) the client's forwarded address is the one checked.
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1")


@dataclass(frozen=True)
class UploadConfig:
    """XEP-0363 HTTP upload at a domain of its own (off while domain is empty)."""

    domain: str = ""
    # The largest file, in bytes (announced in disco#info).
    max_size: int = 104857600
    # Where files are kept.  Empty means "<data_dir>/upload", filled in by load().
    storage_dir: Path = Path()
    # Bytes one user's files may take together, and all files together (0 = no limit).
    user_quota: int = 1024 * 1024 * 1024
    total_quota: int = 0
    # Days a file is kept (0 = for ever); older ones are removed every hour.
    expire_days: int = 30
    # Seconds a slot may be used for its upload after it was handed out.
    slot_lifetime: int = 300


MUC_CREATORS = ("local", "admins", "anyone")
MUC_WHOIS = ("moderators", "anyone")


@dataclass(frozen=True)
class MucConfig:
    """XEP-0045 multi-user chat on a domain of its own (off while ``domain`` is empty)."""

    # The service's domain, e.g. "conference.example.test"; "" = no MUC service.
    domain: str = ""
    # Who may create rooms: "local" (users of the hosted domains), "admins" (only
    # the JIDs in `admins`) or "anyone" (remote users too).
    create: str = "local"
    # Bare JIDs that may create rooms when create = "admins", and own every room.
    admins: tuple[str, ...] = ()
    # Rooms one bare JID may own.
    rooms_per_user: int = 20
    # The most occupants a room may have (and the default of its muc#roomconfig_maxusers).
    max_occupants: int = 200
    # Messages of history a room keeps and may send to a joining occupant.
    history_length: int = 50
    # Messages each room's archive (XEP-0313 on the room) keeps, the oldest going
    # first; 0 = rooms are not archived.  And the most messages one query returns.
    archive_length: int = 10000
    archive_page: int = 250
    # Messages per second one occupant may send into a room, and the burst allowed.
    occupant_rate: float = 5.0
    occupant_burst: int = 20
    # Defaults of a new room's configuration (its owner may change them).
    default_public: bool = True
    default_persistent: bool = False
    default_members_only: bool = False
    default_moderated: bool = False
    # "moderators" (semi-anonymous) or "anyone" (non-anonymous).
    default_whois: str = "moderators"
    default_change_subject: bool = False
    # Whether a new room archives its messages (muc#roomconfig_enablearchiving);
    # nothing is archived while archive_length = 0.
    default_archiving: bool = True
    # The largest vCard (avatar included) an owner may give a room, in bytes.
    vcard_max_size: int = 65536


@dataclass(frozen=True)
class PushConfig:
    """XEP-0357 push notifications to the app servers that clients register."""

    # Whether clients may register app servers (and the account advertises urn:xmpp:push:0).
    enabled: bool = True
    # Registrations one account may have; enabling one more forgets the oldest.
    max_devices: int = 5
    # Seconds a stream-managed session of a device with push enabled stays
    # resumable after its connection breaks (instead of [c2s] sm_resume_timeout).
    hibernation_timeout: float = 259200.0
    # At most one notification per device per this many seconds; what arrives
    # meanwhile is counted into the next one.
    min_interval: float = 10.0
    # Seconds to wait for the app server's answer before counting it as a temporary failure.
    reply_timeout: float = 60.0
    # After a temporary failure (an error of type 'wait', no answer), the
    # notification is tried again after retry_delay seconds, doubling each time,
    # at most max_attempts times in all.
    retry_delay: float = 30.0
    max_attempts: int = 5
    # What the summary form tells the app server beside the message count: the
    # sender's JID and the message body.  Both go to a third party.
    include_sender: bool = True
    include_body: bool = False


@dataclass(frozen=True)
class Config:
    source: str = EMBEDDED
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    c2s: C2SConfig = field(default_factory=C2SConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    im: IMConfig = field(default_factory=IMConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    s2s: S2SConfig = field(default_factory=S2SConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    pep: PepConfig = field(default_factory=PepConfig)
    external_services: ExternalServicesConfig = field(default_factory=ExternalServicesConfig)
    proxy65: Proxy65Config = field(default_factory=Proxy65Config)
    http: HttpConfig = field(default_factory=HttpConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    muc: MucConfig = field(default_factory=MucConfig)
    push: PushConfig = field(default_factory=PushConfig)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file named by ``storage.url``, or None for another engine."""
        prefix = "sqlite:///"
        if self.storage.url.startswith(prefix):
            return Path(self.storage.url[len(prefix):])
        return None


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "storage": StorageConfig,
    "tls": TLSConfig,
    "auth": AuthConfig,
    "c2s": C2SConfig,
    "limits": LimitsConfig,
    "im": IMConfig,
    "components": ComponentsConfig,
    "features": FeaturesConfig,
    "registration": RegistrationConfig,
    "s2s": S2SConfig,
    "archive": ArchiveConfig,
    "pep": PepConfig,
    "external_services": ExternalServicesConfig,
    "proxy65": Proxy65Config,
    "http": HttpConfig,
    "metrics": MetricsConfig,
    "log": LogConfig,
    "upload": UploadConfig,
    "muc": MucConfig,
    "push": PushConfig,
}

# Fields whose value is itself a table: annotated with one of these classes (a
# sub-table, [section.key]) or a tuple of one (an array of tables, [[section.key]]).
_TABLES: dict[str, type] = {
    "PrivilegesConfig": PrivilegesConfig,
    "ComponentConfig": ComponentConfig,
    "ExternalServiceConfig": ExternalServiceConfig,
}


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the TOML file at *path*; None gives the embedded defaults."""
    if path is None:
        return _finish(EMBEDDED, {}, Path.cwd())
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    return _finish(source, raw, Path(source).resolve().parent)


def _finish(source: str, raw: Mapping[str, Any], base: Path) -> Config:
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{source}: [{name}]: unknown section (known: {', '.join(_SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {name}: must be a table ([{name}])")
        sections[name] = _section(source, name, cls, value, base)
    cfg = Config(source=source, **sections)
    _check_across(cfg)
    return _derive(cfg)


def _section(source: str, section: str, cls: type, raw: Mapping[str, Any], base: Path) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{source}: {section}.{key}"
        f = known.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(known)})")
        kind = f.type.replace(" ", "")
        if kind in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: must be a table ([{section}.{key}]), got {_describe(value)}")
            values[key] = _section(source, f"{section}.{key}", _TABLES[kind], value, base)
        elif kind.startswith("tuple[") and kind.endswith(",...]") and kind[6:-5] in _TABLES:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(f"{where}: must be an array of tables ([[{section}.{key}]]), "
                                  f"got {_describe(value)}")
            values[key] = tuple(_section(source, f"{section}.{key}[{i}]", _TABLES[kind[6:-5]], item, base)
                                for i, item in enumerate(value))
        else:
            values[key] = _coerce(where, str(f.type), value, base)  # a string: postponed annotations
    try:
        obj = cls(**values)
    except TypeError as e:  # pragma: no cover - fields() and cls agree
        raise ConfigError(f"{source}: [{section}]: {e}") from None
    _validate(source, section, obj)
    return _resolve(source, section, obj)


def _resolve(source: str, section: str, obj: Any) -> Any:
    """Read the files that values name (a component's secret_file, a ca_file) now,
    so that an unreadable one stops start-up rather than the first handshake."""
    for f in fields(obj):
        if f.name == "ca_file" and getattr(obj, f.name) != Path():
            _check_ca_file(f"{source}: {section}.{f.name}", getattr(obj, f.name))
    if isinstance(obj, (ComponentConfig, ExternalServicesConfig)) and obj.secret_file != Path():
        where = f"{source}: {section}.secret_file"
        try:
            secret = obj.secret_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{where}: cannot read {str(obj.secret_file)!r}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: {str(obj.secret_file)!r} is not UTF-8 text") from None
        if not secret:
            raise ConfigError(f"{where}: {str(obj.secret_file)!r} is empty")
        return dataclasses.replace(obj, secret=secret)
    return obj


def _check_ca_file(where: str, path: Path) -> None:
    from cryptography import x509

    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{where}: {str(path)!r} is a directory; name a PEM file of CA certificates") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {str(path)!r}: {e.strerror}") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{where}: {str(path)!r} holds no PEM certificate") from None


def check_certificates_dir(cfg: Config) -> None:
    """``tls.certificates`` must be an existing directory, unless it lies inside
    data_dir (which the server creates, and the directory with it): a mistyped
    path must not silently gain a generated certificate.  Raises ConfigError."""
    directory = cfg.tls.certificates
    where = f"{cfg.source}: tls.certificates"
    if directory.is_dir():
        return
    if directory.exists():
        raise ConfigError(f"{where}: {str(directory)!r} is not a directory")
    if not directory.is_relative_to(cfg.server.data_dir):
        raise ConfigError(f"{where}: the directory {str(directory)!r} does not exist")


def _check_across(cfg: Config) -> None:
    """Rules that involve more than one section."""
    for i, component in enumerate(cfg.components.component):
        if component.domain in cfg.server.domains:
            raise ConfigError(f"{cfg.source}: components.component[{i}].domain: {component.domain!r} is a hosted "
                              "domain (server.domains); a component needs a domain of its own")
    upload = cfg.upload.domain
    if upload:
        if upload in cfg.server.domains or cfg.components.get(upload) is not None or upload == cfg.proxy65.domain:
            raise ConfigError(f"{cfg.source}: upload.domain: {upload!r} is already a hosted, a component's or the "
                              "proxy's domain; upload needs a domain of its own")
        if not cfg.http.public_url or not (cfg.http.listen or cfg.http.tls_listen):
            raise ConfigError(f"{cfg.source}: upload.domain: needs the HTTP listener ([http] listen or tls_listen, "
                              "and public_url)")
    proxy = cfg.proxy65.domain
    if proxy and (proxy in cfg.server.domains or cfg.components.get(proxy) is not None):
        raise ConfigError(f"{cfg.source}: proxy65.domain: {proxy!r} is already a hosted or a component's domain; "
                          "the proxy needs a domain of its own")
    if cfg.muc.domain and (cfg.muc.domain in cfg.server.domains
                           or cfg.muc.domain in (c.domain for c in cfg.components.component)
                           or cfg.muc.domain in (cfg.upload.domain, cfg.proxy65.domain)):
        raise ConfigError(f"{cfg.source}: muc.domain: {cfg.muc.domain!r} is already a hosted, a component's or "
                          f"another service's domain; "
                          "the MUC service needs a domain of its own")
    for domain in cfg.s2s.routes:
        if domain in cfg.server.domains:
            raise ConfigError(f"{cfg.source}: s2s.routes.{_toml_key(domain)}: {domain!r} is a hosted domain "
                              "(server.domains); routes are for remote domains")


def _coerce(where: str, annotation: str, value: Any, base: Path) -> Any:
    kind = annotation.replace(" ", "")
    if kind == "tuple[str,...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: must be a list of strings, got {_describe(value)}")
        return tuple(value)
    if kind == "Path":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: must be a non-empty path string, got {_describe(value)}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {_describe(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {_describe(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be a whole number, got {_describe(value)}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: must be a number, got {_describe(value)}")
        return float(value)
    if kind == "dict[str,str]":
        # An inline table of strings, e.g. routes = {"peer.example" = "tcp:192.0.2.1:5269"}.
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: must be a table of strings, got {_describe(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise ConfigError(f"{where}.{_toml_key(k)}: must be a string, got {_describe(v)}")
        return dict(value)
    raise AssertionError(f"no coercion for {annotation}")  # pragma: no cover


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() and key.isascii() else f'"{key}"'


def _describe(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _check_service_domain(domain: str, bad: Callable[[str, str], ConfigError]) -> None:
    """The ``domain`` key of a service that may be off (empty)."""
    if not domain:
        return
    try:
        canon = prep_domain(domain)
    except InvalidJID as e:
        raise bad("domain", f"{domain!r} is not a valid domain ({e})") from None
    if canon != domain:
        raise bad("domain", f"{domain!r} must be written in canonical form {canon!r}")


def _validate(source: str, section: str, obj: Any) -> None:
    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {section}.{key}: {problem}")

    if isinstance(obj, ServerConfig):
        if not 1 <= obj.listen_backlog <= 65535:
            raise bad("listen_backlog", "must be between 1 and 65535")
        if not obj.domains:
            raise bad("domains", "must name at least one hosted domain")
        seen = set()
        for d in obj.domains:
            try:
                canon = prep_domain(d)
            except InvalidJID as e:
                raise bad("domains", f"{d!r} is not a valid domain ({e})") from None
            if canon != d:
                raise bad("domains", f"{d!r} must be written in canonical form {canon!r}")
            if canon in seen:
                raise bad("domains", f"{d!r} is listed twice")
            seen.add(canon)
        for admin in obj.admins:
            try:
                parsed = JID.parse(admin)
            except InvalidJID as e:
                raise bad("admins", f"{admin!r} is not a valid JID ({e})") from None
            if parsed.resource is not None or parsed.user is None or parsed.full() != admin:
                raise bad("admins", f"{admin!r} must be a bare JID in canonical form (user@domain)")
            if parsed.host not in obj.domains:
                raise bad("admins", f"{admin!r} is not at a hosted domain")
        if obj.group and not obj.user:
            raise bad("group", "needs server.user")
        if obj.user:
            from fedxmpp.privileges import PrivilegeError, resolve

            try:
                resolve(obj.user, obj.group)
            except PrivilegeError as e:
                raise bad("group" if "group" in str(e) else "user", str(e)) from None
    elif isinstance(obj, StorageConfig):
        problem = storage_url_problem(obj.url) if obj.url else None
        if problem:
            raise bad("url", problem)
        if not 1 <= obj.pool_size <= 1000:
            raise bad("pool_size", "must be between 1 and 1000")
    elif isinstance(obj, AuthConfig):
        if not 4096 <= obj.scram_iterations <= 10_000_000:
            raise bad("scram_iterations", "must be between 4096 (RFC 7677) and 10000000")
        if not 1 <= obj.max_attempts <= 10:
            raise bad("max_attempts", "must be between 1 and 10")
        if not 1 <= obj.min_password_length <= 128:
            raise bad("min_password_length", "must be between 1 and 128")
        if not 0 <= obj.failure_delay <= 60:
            raise bad("failure_delay", "must be between 0 (answer at once) and 60 seconds")
        if not 1 <= obj.block_after <= 1_000_000:
            raise bad("block_after", "must be between 1 and 1000000")
        if not 1 <= obj.block_time <= 7 * 86_400:
            raise bad("block_time", "must be between 1 and 604800 seconds")
        if not 0 <= obj.account_block_after <= 1_000_000:
            raise bad("account_block_after", "must be between 0 (off) and 1000000")
    elif isinstance(obj, C2SConfig):
        for key in ("listen", "direct_tls"):
            _check_endpoints(bad, key, getattr(obj, key), "tcp:5222")
        for key in ("auth_timeout", "idle_timeout", "keepalive_interval"):
            if getattr(obj, key) < 0:
                raise bad(key, "must not be negative")
        if obj.auth_timeout == 0:
            raise bad("auth_timeout", "must be positive")
        if not 0 <= obj.sm_resume_timeout <= 86_400:
            raise bad("sm_resume_timeout", "must be between 0 (no resumption) and 86400 seconds")
        if not 1 <= obj.sm_max_queue <= 100_000:
            raise bad("sm_max_queue", "must be between 1 and 100000")
        if not 1 <= obj.sm_ack_request_every <= obj.sm_max_queue:
            raise bad("sm_ack_request_every", f"must be between 1 and sm_max_queue ({obj.sm_max_queue})")
        if obj.sm_ack_request_delay < 0:
            raise bad("sm_ack_request_delay", "must not be negative (0 = by count only)")
        if obj.sm_max_ack_delay < 0:
            raise bad("sm_max_ack_delay", "must not be negative (0 = off)")
        if not 1 <= obj.csi_max_held <= 100_000:
            raise bad("csi_max_held", "must be between 1 and 100000")
    elif isinstance(obj, IMConfig):
        if not 0 <= obj.offline_quota <= 1_000_000:
            raise bad("offline_quota", "must be between 0 (no offline storage) and 1000000")
        if not 1 <= obj.max_roster_items <= 100_000:
            raise bad("max_roster_items", "must be between 1 and 100000")
    elif isinstance(obj, LimitsConfig):
        if not 10_000 <= obj.max_stanza_size <= 64 * 1024 * 1024:
            raise bad("max_stanza_size", "must be between 10000 (RFC 6120 minimum) and 67108864 bytes")
        if not 8 <= obj.max_depth <= 1000:
            raise bad("max_depth", "must be between 8 and 1000")
        if obj.max_send_buffer < obj.max_stanza_size:
            raise bad("max_send_buffer", "must be at least max_stanza_size")
        if not 1 <= obj.max_send_stall <= 3600:
            raise bad("max_send_stall", "must be between 1 and 3600 seconds")
        for kind in ("c2s", "s2s", "component"):
            rate, burst = getattr(obj, f"{kind}_rate"), getattr(obj, f"{kind}_burst")
            if not 0 <= rate <= 1024 ** 3:
                raise bad(f"{kind}_rate", "must be between 0 (not shaped) and 1073741824 bytes per second")
            if not obj.max_stanza_size <= burst <= 1024 ** 3:
                raise bad(f"{kind}_burst", f"must be between max_stanza_size ({obj.max_stanza_size}) "
                                           "and 1073741824 bytes")
        if not 0 <= obj.max_connections_per_address <= 1_000_000:
            raise bad("max_connections_per_address", "must be between 0 (no bound) and 1000000")
        if not 0 <= obj.connection_rate_per_address <= 1_000_000:
            raise bad("connection_rate_per_address", "must be between 0 (no bound) and 1000000 per second")
        if not 1 <= obj.connection_burst_per_address <= 1_000_000:
            raise bad("connection_burst_per_address", "must be between 1 and 1000000")
        for text in obj.exempt_addresses:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise bad("exempt_addresses", f"{text!r} is not an IP address or network") from None
    elif isinstance(obj, ComponentsConfig):
        _check_endpoints(bad, "listen", obj.listen, "tcp:5347")
        for key in ("idle_timeout", "keepalive_interval"):
            if getattr(obj, key) < 0:
                raise bad(key, "must not be negative")
        if obj.handshake_timeout <= 0:
            raise bad("handshake_timeout", "must be positive")
        seen_components: set[str] = set()
        for i, component in enumerate(obj.component):
            if component.domain in seen_components:
                raise bad(f"component[{i}].domain", f"{component.domain!r} is configured twice")
            seen_components.add(component.domain)
    elif isinstance(obj, ComponentConfig):
        if not obj.domain:
            raise bad("domain", "is required: the domain the component serves")
        _check_service_domain(obj.domain, bad)
        if obj.secret and obj.secret_file != Path():
            raise bad("secret", "give secret or secret_file, not both")
        if not obj.secret and obj.secret_file == Path():
            raise bad("secret", "is required (or secret_file): the shared secret of the XEP-0114 handshake")
    elif isinstance(obj, PrivilegesConfig):
        if obj.roster not in ROSTER_PRIVILEGES:
            raise bad("roster", f"must be one of {', '.join(map(repr, ROSTER_PRIVILEGES))}, got {obj.roster!r}")
        if obj.message not in MESSAGE_PRIVILEGES:
            raise bad("message", f"must be one of {', '.join(map(repr, MESSAGE_PRIVILEGES))}, got {obj.message!r}")
    elif isinstance(obj, FeaturesConfig):
        for key in ("vcard_max_size", "private_max_size"):
            if not 1024 <= getattr(obj, key) <= 16 * 1024 * 1024:
                raise bad(key, "must be between 1024 and 16777216 bytes")
        if not 1 <= obj.private_max_items <= 10_000:
            raise bad("private_max_items", "must be between 1 and 10000")
        if not 1 <= obj.blocklist_max_items <= 100_000:
            raise bad("blocklist_max_items", "must be between 1 and 100000")
    elif isinstance(obj, ArchiveConfig):
        if not 0 <= obj.retention_days <= 36_500:
            raise bad("retention_days", "must be between 0 (keep for ever) and 36500")
        if obj.default_prefs not in ARCHIVE_PREFS:
            raise bad("default_prefs", f"must be one of {', '.join(map(repr, ARCHIVE_PREFS))}, "
                                       f"got {obj.default_prefs!r}")
        if not 1 <= obj.max_page <= 10_000:
            raise bad("max_page", "must be between 1 and 10000")
    elif isinstance(obj, PepConfig):
        if not 1 <= obj.max_nodes <= 10_000:
            raise bad("max_nodes", "must be between 1 and 10000")
        if not 1 <= obj.max_items <= 100_000:
            raise bad("max_items", "must be between 1 and 100000")
        if not 1024 <= obj.max_item_size <= 64 * 1024 * 1024:
            raise bad("max_item_size", "must be between 1024 and 67108864 bytes")
    elif isinstance(obj, ExternalServiceConfig):
        if obj.type not in EXTERNAL_SERVICE_TYPES:
            raise bad("type", f"must be one of {', '.join(map(repr, EXTERNAL_SERVICE_TYPES))}, got {obj.type!r}")
        if not obj.host:
            raise bad("host", "is required: the STUN/TURN server's host name or IP address")
        if not 0 <= obj.port <= 65535:
            raise bad("port", "must be between 1 and 65535 (0 = the standard port of the type)")
        if obj.transport not in EXTERNAL_SERVICE_TRANSPORTS:
            raise bad("transport", f"must be one of {', '.join(map(repr, EXTERNAL_SERVICE_TRANSPORTS))}, "
                                   f"got {obj.transport!r}")
    elif isinstance(obj, ExternalServicesConfig):
        if obj.secret and obj.secret_file != Path():
            raise bad("secret", "give secret or secret_file, not both")
        if not obj.secret and obj.secret_file == Path() and any(s.type.startswith("turn") for s in obj.service):
            raise bad("secret", "is required (or secret_file) for the TURN services: the TURN server's "
                                "static-auth-secret")
        if not 5 <= obj.credential_lifetime <= 30 * 86400:
            raise bad("credential_lifetime", "must be between 5 and 2592000 seconds")
    elif isinstance(obj, Proxy65Config):
        _validate_proxy65(obj, bad)
    elif isinstance(obj, HttpConfig):
        for key in ("listen", "tls_listen"):
            _check_endpoints(bad, key, getattr(obj, key), "tcp:5280")
        if obj.public_url:
            scheme, _, rest = obj.public_url.partition("://")
            if scheme not in ("http", "https") or not rest or any(c in rest for c in "?#") or " " in rest:
                raise bad("public_url", f"{obj.public_url!r} must be an http:// or https:// URL without query")
        for text in obj.trusted_proxies:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise bad("trusted_proxies", f"{text!r} is not an IP address or network") from None
    elif isinstance(obj, LogConfig):
        if obj.level not in LOG_LEVELS:
            raise bad("level", f"must be one of {', '.join(map(repr, LOG_LEVELS))}, got {obj.level!r}")
        if obj.format not in LOG_FORMATS:
            raise bad("format", f"must be 'text' or 'json', got {obj.format!r}")
    elif isinstance(obj, MetricsConfig):
        _check_endpoints(bad, "listen", obj.listen, "tcp:9090:interface=127.0.0.1")
        for text in obj.allow:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise bad("allow", f"{text!r} is not an IP address or network") from None
    elif isinstance(obj, UploadConfig):
        _check_service_domain(obj.domain, bad)
        if not 1 <= obj.max_size <= 1024 ** 4:
            raise bad("max_size", "must be between 1 and 1099511627776 bytes")
        for key in ("user_quota", "total_quota"):
            if not 0 <= getattr(obj, key) <= 1024 ** 5:
                raise bad(key, "must be between 0 (no limit) and 1125899906842624 bytes")
        if not 0 <= obj.expire_days <= 36_500:
            raise bad("expire_days", "must be between 0 (keep for ever) and 36500")
        if not 10 <= obj.slot_lifetime <= 86_400:
            raise bad("slot_lifetime", "must be between 10 and 86400 seconds")
    elif isinstance(obj, PushConfig):
        if not 1 <= obj.max_devices <= 100:
            raise bad("max_devices", "must be between 1 and 100")
        if not 0 <= obj.hibernation_timeout <= 30 * 86_400:
            raise bad("hibernation_timeout", "must be between 0 (as [c2s] sm_resume_timeout) and 2592000 seconds")
        if not 0 <= obj.min_interval <= 86_400:
            raise bad("min_interval", "must be between 0 and 86400 seconds")
        if not 1 <= obj.reply_timeout <= 3600:
            raise bad("reply_timeout", "must be between 1 and 3600 seconds")
        if not 1 <= obj.retry_delay <= 86_400:
            raise bad("retry_delay", "must be between 1 and 86400 seconds")
        if not 1 <= obj.max_attempts <= 20:
            raise bad("max_attempts", "must be between 1 and 20")
    elif isinstance(obj, MucConfig):
        _check_service_domain(obj.domain, bad)
        if obj.create not in MUC_CREATORS:
            raise bad("create", f"must be one of {', '.join(map(repr, MUC_CREATORS))}, got {obj.create!r}")
        for admin in obj.admins:
            try:
                parsed = JID.parse(admin)
            except InvalidJID as e:
                raise bad("admins", f"{admin!r} is not a valid JID ({e})") from None
            if parsed.resource is not None or parsed.user is None or parsed.full() != admin:
                raise bad("admins", f"{admin!r} must be a bare JID in canonical form (user@domain)")
        if obj.create == "admins" and not obj.admins:
            raise bad("admins", "must name at least one JID when create = 'admins'")
        if not 1 <= obj.rooms_per_user <= 100_000:
            raise bad("rooms_per_user", "must be between 1 and 100000")
        if not 1 <= obj.max_occupants <= 100_000:
            raise bad("max_occupants", "must be between 1 and 100000")
        if not 0 <= obj.history_length <= 10_000:
            raise bad("history_length", "must be between 0 and 10000")
        if not 0 <= obj.archive_length <= 10_000_000:
            raise bad("archive_length", "must be between 0 (no archive) and 10000000")
        if not 1 <= obj.archive_page <= 10_000:
            raise bad("archive_page", "must be between 1 and 10000")
        if obj.occupant_rate <= 0:
            raise bad("occupant_rate", "must be positive")
        if not 1 <= obj.occupant_burst <= 100_000:
            raise bad("occupant_burst", "must be between 1 and 100000")
        if not 1024 <= obj.vcard_max_size <= 1 << 20:
            raise bad("vcard_max_size", "must be between 1024 and 1048576 bytes")
        if obj.default_whois not in MUC_WHOIS:
            raise bad("default_whois", f"must be one of {', '.join(map(repr, MUC_WHOIS))}, "
                                       f"got {obj.default_whois!r}")
    elif isinstance(obj, RegistrationConfig):
        if not 1 <= obj.max_per_ip <= 10_000:
            raise bad("max_per_ip", "must be between 1 and 10000 (turn registration off with enabled = false)")
        if obj.period <= 0:
            raise bad("period", "must be positive")
    elif isinstance(obj, S2SConfig):
        for key in ("listen", "direct_tls"):
            _check_endpoints(bad, key, getattr(obj, key), "tcp:5269")
        for text in obj.nameservers:
            try:
                parse_nameserver(text)
            except ValueError as e:
                raise bad("nameservers", f"{text!r}: {e} (expected 'ADDRESS' or 'ADDRESS:PORT')") from None
        for domain, desc in obj.routes.items():
            where = f"routes.{_toml_key(domain)}"
            try:
                canon = prep_domain(domain)
            except InvalidJID as e:
                raise bad(where, f"{domain!r} is not a valid domain ({e})") from None
            if canon != domain:
                raise bad(where, f"{domain!r} must be written in canonical form {canon!r}")
            try:
                parse_route(desc)
            except ValueError as e:
                raise bad(where, f"{desc!r} {e}") from None
        for key in ("connect_timeout", "auth_timeout", "send_timeout"):
            if getattr(obj, key) <= 0:
                raise bad(key, "must be positive")
        if obj.idle_timeout < 0:
            raise bad("idle_timeout", "must not be negative (0 = never)")
        if not 1 <= obj.queue_size <= 1_000_000:
            raise bad("queue_size", "must be between 1 and 1000000")


def _check_endpoints(bad: Any, key: str, descriptions: tuple[str, ...], example: str) -> None:
    for description in descriptions:
        problem = endpoint_problem(description)
        if problem is not None:
            raise bad(key, f"{description!r} {problem} (write e.g. {example!r})")


def endpoint_problem(description: str) -> str | None:
    """Why *description* is not a server endpoint string Twisted can listen on, or None.

    Parsed the way ``serverFromString`` parses it at start-up, without a reactor:
    nothing is opened.  Its exceptions are reworded for one line.
    """
    from twisted.internet.endpoints import serverFromString

    if ":" not in description:
        return "is not a Twisted endpoint string"
    try:
        endpoint = serverFromString(None, description)
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(e))
        if unknown:
            return f"has an unknown option {unknown.group(1)!r}"
        return f"has misplaced or repeated arguments ({e})"
    except ValueError as e:
        if str(e).startswith("Unknown endpoint type"):
            return f"names an unknown endpoint type {description.split(':', 1)[0]!r}"
        return f"has a value that is not valid ({e})"
    except OSError as e:
        return f"names a file that cannot be read ({e.strerror})"
    except Exception as e:  # a plugin's parser may raise anything
        return f"cannot be parsed ({type(e).__name__}: {e})"
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        return "has a port outside 0 to 65535"
    return None


def with_backlog(description: str, backlog: int) -> str:
    """*description* with ``backlog=BACKLOG`` added when it is a TCP endpoint that
    sets none (Twisted's default, 50, drops bursts of connections)."""
    kind = description.split(":", 1)[0]
    if kind not in ("tcp", "tcp6") or re.search(r"(?<!\\):backlog=", description):
        return description
    return f"{description}:backlog={backlog}"


def _validate_proxy65(obj: Proxy65Config, bad: Any) -> None:
    if not obj.domain:
        if obj.listen:
            raise bad("domain", "is required with listen: the domain the proxy serves")
        return
    _check_service_domain(obj.domain, bad)
    if not obj.listen:
        raise bad("listen", "must name at least one listener, e.g. ['tcp:7777'], when domain is set")
    _check_endpoints(bad, "listen", obj.listen, "tcp:7777")
    if not 0 <= obj.port <= 65535:
        raise bad("port", "must be between 1 and 65535 (0 = the port of the first listen entry)")
    if obj.port == 0 and proxy65_listen_port(obj.listen[0]) is None:
        raise bad("port", f"must be given: it cannot be read from listen entry {obj.listen[0]!r}")
    if not 0 <= obj.rate <= 1024 ** 3:
        raise bad("rate", "must be between 0 (not limited) and 1073741824 bytes per second")
    if not 2 <= obj.max_connections <= 100_000:
        raise bad("max_connections", "must be between 2 and 100000")
    if not 1 <= obj.max_streams_per_user <= 10_000:
        raise bad("max_streams_per_user", "must be between 1 and 10000")
    for key in ("pending_timeout", "idle_timeout"):
        if not 1 <= getattr(obj, key) <= 86_400:
            raise bad(key, "must be between 1 and 86400 seconds")


def proxy65_listen_port(description: str) -> int | None:
    """The port of a 'tcp:PORT...' endpoint string, else None."""
    kind, _, rest = description.partition(":")
    port = rest.split(":", 1)[0]
    if kind in ("tcp", "tcp6") and port.isdigit() and 0 < int(port) < 65536:
        return int(port)
    return None


def parse_route(description: str) -> tuple[bool, str, int]:
    """An ``[s2s] routes`` value: ``tcp:HOST:PORT`` (STARTTLS) or ``tls:HOST:PORT``
    (direct TLS), an IPv6 HOST in brackets; (direct_tls, host, port).  Raises ValueError."""
    kind, sep, rest = description.partition(":")
    if not sep or kind not in ("tcp", "tls"):
        raise ValueError("must be 'tcp:HOST:PORT' (STARTTLS) or 'tls:HOST:PORT' (direct TLS)")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("must end with ':PORT', a port number from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"has {host!r} in brackets, which is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("must write an IPv6 address in brackets, e.g. 'tcp:[2001:db8::1]:5269'")
    return kind == "tls", host, int(port_text)


def parse_nameserver(text: str) -> tuple[str, int]:
    """An ``[s2s] nameservers`` entry: ``ADDRESS``, ``ADDRESS:PORT`` or
    ``[IPV6]:PORT``; (address, port).  Raises ValueError."""
    host, port = text, 53
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:] if end >= 0 else ""
        if end < 0 or (rest and (not rest.startswith(":") or not rest[1:].isdigit())):
            raise ValueError("is not '[ADDRESS]:PORT'")
        host = text[1:end]
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text.isdigit():
            raise ValueError("has a port that is not a number")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"names {host!r}, which is not an IP address") from None
    if not 0 < port < 65536:
        raise ValueError("has a port outside 1 to 65535")
    return host, port


def storage_url_problem(url: str) -> str | None:
    """What is wrong with a ``storage.url`` (never quoting its password), or None."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            return "must be sqlite:///PATH"
        return "names no database file" if url == "sqlite:///" else None
    if scheme not in ("postgresql", "postgres"):
        return f"unsupported storage {scheme!r} (supported: sqlite:///PATH, postgresql://USER@HOST/DATABASE)"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        return f"is not a PostgreSQL URL ({e})"
    if not url.startswith(f"{scheme}://"):
        return "must be postgresql://USER@HOST/DATABASE"
    if parts.fragment:
        return "must not have a #fragment"
    return None


def _derive(cfg: Config) -> Config:
    """Fill in values that default relative to data_dir."""
    data_dir = cfg.server.data_dir
    storage, tls, server = cfg.storage, cfg.tls, cfg.server
    if server.admin_socket == Path():
        server = dataclasses.replace(server, admin_socket=data_dir / "admin.sock")
    _check_socket_path(cfg.source, server.admin_socket)
    if not storage.url:
        storage = dataclasses.replace(storage, url=f"sqlite:///{data_dir / 'fedxmpp.sqlite3'}")
    if tls.certificates == Path():
        tls = dataclasses.replace(tls, certificates=data_dir / "certs")
    proxy65 = cfg.proxy65
    if proxy65.domain:
        proxy65 = dataclasses.replace(proxy65, host=proxy65.host or proxy65.domain,
                                      port=proxy65.port or proxy65_listen_port(proxy65.listen[0]) or 0)
    upload = cfg.upload
    if upload.storage_dir == Path():
        upload = dataclasses.replace(upload, storage_dir=data_dir / "upload")
    return dataclasses.replace(cfg, server=server, storage=storage, tls=tls, proxy65=proxy65, upload=upload)


# sun_path holds 108 bytes on Linux, 104 on the BSDs and macOS, with a final NUL.
MAX_SOCKET_PATH = 103


def _check_socket_path(source: str, path: Path) -> None:
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH:
        raise ConfigError(f"{source}: server.admin_socket: {str(path)!r} is {length} bytes long; a UNIX socket "
                          f"path may have at most {MAX_SOCKET_PATH} (set a shorter server.admin_socket)")
