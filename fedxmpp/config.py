"""The server's configuration: one frozen dataclass per TOML section.

Only this module reads TOML.  Every default and every validation message lives
here; a problem becomes a :class:`ConfigError` whose text is one line naming the
file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from fedxmpp.xml.jid import InvalidJID, prep_domain

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


@dataclass(frozen=True)
class StorageConfig:
    # Empty means "sqlite in data_dir", filled in by load().
    url: str = ""


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


@dataclass(frozen=True)
class LimitsConfig:
    max_stanza_size: int = 262144
    max_depth: int = 64
    # Bytes queued for a slow reader before the session is closed.
    max_send_buffer: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    source: str = EMBEDDED
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    c2s: C2SConfig = field(default_factory=C2SConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

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
    return _derive(cfg)


def _section(source: str, section: str, cls: type, raw: Mapping[str, Any], base: Path) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{source}: {section}.{key}"
        f = known.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(known)})")
        values[key] = _coerce(where, f.type, value, base)
    try:
        obj = cls(**values)
    except TypeError as e:  # pragma: no cover - fields() and cls agree
        raise ConfigError(f"{source}: [{section}]: {e}") from None
    _validate(source, section, obj)
    return obj


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
    raise AssertionError(f"no coercion for {annotation}")  # pragma: no cover


def _describe(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _validate(source: str, section: str, obj: Any) -> None:
    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {section}.{key}: {problem}")

    if isinstance(obj, ServerConfig):
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
    elif isinstance(obj, StorageConfig):
        if obj.url and not obj.url.startswith("sqlite:///"):
            raise bad("url", f"unsupported storage {obj.url.split(':', 1)[0]!r} (supported: sqlite:///PATH)")
        if obj.url == "sqlite:///":
            raise bad("url", "names no database file")
    elif isinstance(obj, AuthConfig):
        if not 4096 <= obj.scram_iterations <= 10_000_000:
            raise bad("scram_iterations", "must be between 4096 (RFC 7677) and 10000000")
        if not 1 <= obj.max_attempts <= 10:
            raise bad("max_attempts", "must be between 1 and 10")
    elif isinstance(obj, C2SConfig):
        for key in ("listen", "direct_tls"):
            for desc in getattr(obj, key):
                if ":" not in desc:
                    raise bad(key, f"{desc!r} is not a Twisted endpoint string such as 'tcp:5222'")
        for key in ("auth_timeout", "idle_timeout", "keepalive_interval"):
            if getattr(obj, key) < 0:
                raise bad(key, "must not be negative")
        if obj.auth_timeout == 0:
            raise bad("auth_timeout", "must be positive")
    elif isinstance(obj, LimitsConfig):
        if not 10_000 <= obj.max_stanza_size <= 64 * 1024 * 1024:
            raise bad("max_stanza_size", "must be between 10000 (RFC 6120 minimum) and 67108864 bytes")
        if not 8 <= obj.max_depth <= 1000:
            raise bad("max_depth", "must be between 8 and 1000")
        if obj.max_send_buffer < obj.max_stanza_size:
            raise bad("max_send_buffer", "must be at least max_stanza_size")


def _derive(cfg: Config) -> Config:
    """Fill in values that default relative to data_dir."""
    data_dir = cfg.server.data_dir
    storage, tls = cfg.storage, cfg.tls
    if not storage.url:
        storage = dataclasses.replace(storage, url=f"sqlite:///{data_dir / 'fedxmpp.sqlite3'}")
    if tls.certificates == Path():
        tls = dataclasses.replace(tls, certificates=data_dir / "certs")
    return dataclasses.replace(cfg, storage=storage, tls=tls)
