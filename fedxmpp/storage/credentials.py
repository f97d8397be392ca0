"""SCRAM credentials (RFC 5802 §3, RFC 7677): what the server keeps instead of a password.

Only the salt, the iteration count, StoredKey and ServerKey are ever kept.  The
password and SaltedPassword exist only in the local variables of :func:`derive`.

Everything here is synchronous and CPU-bound (PBKDF2): callers on the reactor
thread must run it in a thread pool (``hashlib.pbkdf2_hmac`` releases the GIL) or
a process pool.  This module imports nothing from Twisted so that process-pool
workers start quickly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Final, Literal, Mapping, get_args

import precis_i18n

HashName = Literal["sha-1", "sha-256"]
HASH_NAMES: Final[tuple[HashName, ...]] = get_args(HashName)

# The hashlib name and digest size of each SCRAM hash.
_HASHLIB: Final[dict[str, str]] = {"sha-1": "sha1", "sha-256": "sha256"}
_BY_DIGEST_SIZE: Final[dict[int, str]] = {20: "sha1", 32: "sha256"}

SALT_SIZE: Final = 16
# A bound on what a client can make the server prepare and hash.
MAX_PASSWORD_BYTES: Final = 1024

_OPAQUE = precis_i18n.get_profile("OpaqueString")


class InvalidPassword(ValueError):
    """The password cannot be used (empty, too long or a disallowed character).

    The message never contains the password or any of its characters.
    """


@dataclass(frozen=True)
class ScramCredentials:
    salt: bytes
    iterations: int
    # Secrets: left out of repr() so that they cannot end up in a log line.
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


# Credentials for each hash name, as stored for one account.
CredentialSet = Mapping[HashName, ScramCredentials]


def hashlib_name(hash_name: str) -> str:
    """The :mod:`hashlib` name for a SCRAM hash name; ValueError if unknown."""
    try:
        return _HASHLIB[hash_name]
    except KeyError:
        raise ValueError(f"unknown SCRAM hash {hash_name!r}") from None


def prepare_password(password: str) -> bytes:
    """The password as PBKDF2 input: PRECIS OpaqueString (RFC 8265), UTF-8.

    Raises :class:`InvalidPassword` without quoting the password.
    """
    reason: str | None = None
    prepared = ""
    try:
        prepared = _OPAQUE.enforce(password)
    except UnicodeError as e:
        # The exception's own text quotes the offending character: keep only the reason.
        reason = str(getattr(e, "reason", "is not valid"))
    if reason is not None:
        raise InvalidPassword(f"password rejected: {reason}")
    data = prepared.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise InvalidPassword(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    return data


def check_password_length(password: str, minimum: int) -> None:
    """Raise :class:`InvalidPassword` when *password* has fewer than *minimum*
    characters (the site's policy for new passwords, ``[auth] min_password_length``)."""
    if len(password) < minimum:
        raise InvalidPassword(f"password too short: at least {minimum} characters are required")


def salted_password(algorithm: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i) — PBKDF2-HMAC."""
    return hashlib.pbkdf2_hmac(algorithm, password, salt, iterations)


def derive(password: str, hash_name: HashName, iterations: int,
           salt: bytes | None = None) -> ScramCredentials:
    """The SCRAM credentials for *password* (RFC 5802 §3).

    *salt* defaults to :data:`SALT_SIZE` bytes from ``os.urandom``; pass one only
    to reproduce known values (test vectors).
    """
    algorithm = hashlib_name(hash_name)
    if iterations < 1:
        raise ValueError("iterations must be positive")
    if salt is None:
        salt = os.urandom(SALT_SIZE)
    elif not salt:
        raise ValueError("salt must not be empty")
    salted = salted_password(algorithm, prepare_password(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", algorithm)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(algorithm, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", algorithm),
    )


def derive_all(password: str, iterations: int) -> dict[HashName, ScramCredentials]:
    """Credentials for every supported hash, each with its own salt.

    A module-level function so that process-pool workers can run it.
    """
    return {name: derive(password, name, iterations) for name in HASH_NAMES}


def verify_password(creds: ScramCredentials, password: str) -> bool:
    """Whether *password* matches *creds*; the hash is told by the key length.

    Used for SASL PLAIN.  The final comparison is constant-time.
    """
    algorithm = _BY_DIGEST_SIZE.get(len(creds.stored_key))
    if algorithm is None:
        raise ValueError("stored key has no known SCRAM hash length")
    try:
        data = prepare_password(password)
    except InvalidPassword:
        return False
    salted = salted_password(algorithm, data, creds.salt, creds.iterations)
    client_key = hmac.digest(salted, b"Client Key", algorithm)
    return hmac.compare_digest(hashlib.new(algorithm, client_key).digest(), creds.stored_key)
