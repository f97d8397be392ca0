"""XMPP addresses per RFC 7622.

Localparts are prepared with the PRECIS UsernameCaseMapped profile, resourceparts
with OpaqueString (both from ``precis_i18n``), domainparts are lower-cased, NFC and
checked label by label.  Preparation results are kept in small bounded LRU caches:
unlike ``twisted.words.protocols.jabber.jid.internJID``, nothing read from the
network can grow memory without bound.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import precis_i18n

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")

_LOCAL_FORBIDDEN = frozenset('"&\'/:<>@')
_MAX_PART = 1023


class InvalidJID(ValueError):
    """The string is not a valid XMPP address (RFC 7622)."""


@lru_cache(maxsize=4096)
def prep_local(local: str) -> str:
    if not local:
        raise InvalidJID("empty localpart")
    try:
        out = _USERNAME.enforce(local)
    except UnicodeError as e:
        raise InvalidJID(f"localpart: {e}") from None
    if _LOCAL_FORBIDDEN.intersection(out):
        raise InvalidJID("localpart contains a forbidden character")
    if len(out.encode()) > _MAX_PART:
        raise InvalidJID("localpart longer than 1023 bytes")
    return out


@lru_cache(maxsize=4096)
def prep_resource(resource: str) -> str:
    if not resource:
        raise InvalidJID("empty resourcepart")
    try:
        out = _OPAQUE.enforce(resource)
    except UnicodeError as e:
        raise InvalidJID(f"resourcepart: {e}") from None
    if len(out.encode()) > _MAX_PART:
        raise InvalidJID("resourcepart longer than 1023 bytes")
    return out


@lru_cache(maxsize=4096)
def prep_domain(domain: str) -> str:
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise InvalidJID("empty domainpart")
    if domain.startswith("[") and domain.endswith("]"):
        return domain  # IPv6 literal; kept as written
    out = unicodedata.normalize("NFC", domain.lower())
    if len(out.encode()) > _MAX_PART:
        raise InvalidJID("domainpart longer than 1023 bytes")
    for label in out.split("."):
        if not label or len(label.encode("idna") if not label.isascii() else label) > 63:
            raise InvalidJID("domainpart has an empty or over-long label")
        if label.isascii():
            if not all(c.isalnum() or c in "-_" for c in label) or label[0] == "-" or label[-1] == "-":
                raise InvalidJID("domainpart has a character not allowed in a host name")
        elif any(unicodedata.category(c)[0] in "CZ" or c in "/@:<>" for c in label):
            raise InvalidJID("domainpart has a forbidden character")
    return out


class JID:
    """An immutable, prepared XMPP address.  Cheap to hash and compare."""

    __slots__ = ("user", "host", "resource", "_full", "_hash", "_bare")

    def __init__(self, user: str | None, host: str, resource: str | None = None) -> None:
        self.user = user
        self.host = host
        self.resource = resource
        s = host
        if user is not None:
            s = f"{user}@{s}"
        if resource is not None:
            s = f"{s}/{resource}"
        self._full = s
        self._hash = hash(s)
        self._bare: JID | None = None

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse and prepare *text*; raise :class:`InvalidJID` if it is not a JID."""
        if len(text) > 3071 + 2:
            raise InvalidJID("address too long")
        slash = text.find("/")
        if slash >= 0:
            bare, resource = text[:slash], prep_resource(text[slash + 1:])
        else:
            bare, resource = text, None
        at = bare.find("@")
        if at >= 0:
            user, host = prep_local(bare[:at]), bare[at + 1:]
        else:
            user, host = None, bare
        return cls(user, prep_domain(host), resource)

    @classmethod
    def make(cls, user: str | None, host: str, resource: str | None = None) -> JID:
        """Build from separate parts, preparing each."""
        return cls(prep_local(user) if user is not None else None, prep_domain(host),
                   prep_resource(resource) if resource is not None else None)

    @property
    def bare(self) -> JID:
        if self.resource is None:
            return self
        if self._bare is None:
            self._bare = JID(self.user, self.host)
        return self._bare

    @property
    def domain(self) -> JID:
        return JID(None, self.host)

    def with_resource(self, resource: str) -> JID:
        return JID(self.user, self.host, resource)

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    def full(self) -> str:
        return self._full

    def __str__(self) -> str:
        return self._full

    def __repr__(self) -> str:
        return f"JID({self._full!r})"

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JID) and other._full == self._full

    def __ne__(self, other: object) -> bool:
        return not self == other
