"""SCRAM, server side: RFC 5802 with SHA-1, RFC 7677 with SHA-256, and the -PLUS
variants with channel binding (RFC 5929 ``tls-server-end-point``, RFC 9266
``tls-exporter``, or any type the TLS layer supplies).

The server never sees the password: it checks the client's proof against the
stored StoredKey and proves itself with ServerKey.  An unknown or unusable
username gets a salt and iteration count derived from a per-process secret, and
fails at the proof step exactly like a wrong password, so the exchange does not
tell which accounts exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from typing import Awaitable, Callable, Final, Mapping

from twisted.logger import Logger

from fedxmpp.c2s.mechanism import MAX_MESSAGE, Challenge, Failure, Success, authzid_acceptable
from fedxmpp.storage.credentials import HashName, ScramCredentials, hashlib_name
from fedxmpp.xml.jid import InvalidJID, prep_local

log = Logger()

# Mechanism name -> hash.  The -PLUS names are these plus "-PLUS".
HASHES: Final[dict[str, HashName]] = {"SCRAM-SHA-256": "sha-256", "SCRAM-SHA-1": "sha-1"}

CredentialLookup = Callable[[str], Awaitable["ScramCredentials | None"]]

# Keys the fake credentials of unknown users: fresh for each process until the
# server's secret is known (use_secret), so that they stay the same across
# restarts and nodes, as a real account's do.
_PROCESS_SECRET: Final = os.urandom(32)
_secret: bytes = _PROCESS_SECRET


def use_secret(secret: bytes) -> None:
    """Key the credentials shown for unknown users with *secret* from now on."""
    global _secret
    _secret = secret

_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+")
# RFC 5802 'printable': %x21-2B / %x2D-7E (no comma).
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_SASLNAME_ESCAPE = re.compile(r"=(2C|3D)?")
_MAX_NONCE: Final = 1024


def _random_nonce() -> str:
    return base64.b64encode(os.urandom(18)).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def decode_saslname(text: str) -> str | None:
    """RFC 5802 saslname: '=2C' is ',', '=3D' is '='; any other '=' or a NUL is invalid."""
    if not text or "\0" in text:
        return None
    bad = False

    def unescape(m: re.Match[str]) -> str:
        nonlocal bad
        if m.group(1) is None:
            bad = True
            return ""
        return "," if m.group(1) == "2C" else "="

    out = _SASLNAME_ESCAPE.sub(unescape, text)
    return None if bad else out


class ScramMechanism:
    """One SCRAM exchange: client-first -> server-first -> client-final -> server-final."""

    def __init__(self, name: str, *, domain: str, lookup: CredentialLookup,
                 channel_bindings: Mapping[str, bytes], plus_offered: bool,
                 fake_iterations: int,
                 nonce: Callable[[], str] = _random_nonce,
                 secret: bytes | None = None) -> None:
        base = name.removesuffix("-PLUS")
        if base not in HASHES:
            raise KeyError(name)
        self.name = name
        self._hash_name = HASHES[base]
        self._algorithm = hashlib_name(self._hash_name)
        self._digest_size = hashlib.new(self._algorithm).digest_size
        self._plus = name.endswith("-PLUS")
        self._domain = domain
        self._lookup = lookup
        self._channel_bindings = dict(channel_bindings)
        self._plus_offered = plus_offered
        self._fake_iterations = fake_iterations
        self._make_nonce = nonce
        self._secret = secret if secret is not None else _secret
        self._state = "first"
        self._asked = False
        # Set by the client-first message:
        self._user = ""
        self._known = False
        self._creds: ScramCredentials | None = None
        self._cbind_input = b""
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""

    async def step(self, response: bytes | None) -> Challenge | Success | Failure:
        if self._state == "first":
            if response is None and not self._asked:
                # SCRAM is client-first: ask for the message with an empty challenge.
                self._asked = True
                return Challenge(b"")
            result: Challenge | Success | Failure
            if response is None:
                result = Failure("malformed-request", "expected client-first-message")
            else:
                result = await self._client_first(response)
        elif self._state == "final":
            if response is None:
                result = Failure("malformed-request", "expected client-final-message")
            else:
                result = self._client_final(response)
        else:
            return Failure("malformed-request", "the exchange is over")
        self._state = "final" if isinstance(result, Challenge) else "done"
        return result

    async def _client_first(self, message: bytes) -> Challenge | Failure:
        text = _decode(message)
        if text is None:
            return Failure("malformed-request", "client-first-message is not UTF-8 or too long")
        parts = text.split(",", 2)
        if len(parts) != 3:
            return Failure("malformed-request", "missing GS2 header")
        cbflag, authz, bare = parts

        failure = self._check_channel_binding_flag(cbflag)
        if failure is not None:
            return failure
        authzid = ""
        if authz:
            if not authz.startswith("a="):
                return Failure("malformed-request", "bad authzid in GS2 header")
            decoded = decode_saslname(authz[2:])
            if decoded is None:
                return Failure("malformed-request", "bad authzid in GS2 header")
            authzid = decoded
        self._cbind_input = f"{cbflag},{authz},".encode("utf-8")
        if cbflag.startswith("p="):
            self._cbind_input += self._channel_bindings[cbflag[2:]]

        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            return Failure("malformed-request", "unsupported mandatory extension")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            return Failure("malformed-request", "expected n=username,r=nonce")
        username = decode_saslname(attrs[0][2:])
        client_nonce = attrs[1][2:]
        if username is None:
            return Failure("malformed-request", "bad username")
        if len(client_nonce) > _MAX_NONCE or not _NONCE.fullmatch(client_nonce):
            return Failure("malformed-request", "bad nonce")

        try:
            user: str | None = prep_local(username)
        except InvalidJID:
            user = None
        creds: ScramCredentials | None = None
        if user is not None:
            if not authzid_acceptable(authzid, user, self._domain):
                return Failure("invalid-authzid")
            try:
                creds = await self._lookup(user)
            except Exception:
                log.failure("SCRAM: credential lookup for {user}@{domain} failed",
                            user=user, domain=self._domain)
                return Failure("temporary-auth-failure")
        self._known = creds is not None
        # Keyed on the prepared name when there is one, as a real account's salt is.
        self._creds = creds if creds is not None else self._fake_credentials(user or username)
        self._user = user or ""

        self._nonce = client_nonce + self._make_nonce()
        salt = base64.b64encode(self._creds.salt).decode("ascii")
        self._client_first_bare = bare
        self._server_first = f"r={self._nonce},s={salt},i={self._creds.iterations}"
        return Challenge(self._server_first.encode("ascii"))

    def _check_channel_binding_flag(self, cbflag: str) -> Failure | None:
        if cbflag == "n":
            if self._plus:
                return Failure("malformed-request", f"{self.name} requires channel binding")
            return None
        if cbflag == "y":
            if self._plus:
                return Failure("malformed-request", f"{self.name} requires channel binding")
            if self._plus_offered:
                # The client can bind but believes we cannot: a -PLUS offer was stripped.
                return Failure("not-authorized", "channel binding downgrade detected")
            return None
        if cbflag.startswith("p="):
            cb_name = cbflag[2:]
            if not self._plus:
                return Failure("malformed-request", f"{self.name} does not use channel binding")
            if not _CB_NAME.fullmatch(cb_name):
                return Failure("malformed-request", "bad channel binding type")
            if cb_name not in self._channel_bindings:
                return Failure("not-authorized", "unsupported channel binding type")
            return None
        return Failure("malformed-request", "bad GS2 channel binding flag")

    def _client_final(self, message: bytes) -> Success | Failure:
        assert self._creds is not None
        text = _decode(message)
        if text is None:
            return Failure("malformed-request", "client-final-message is not UTF-8 or too long")
        cut = text.rfind(",p=")
        if cut < 0:
            return Failure("malformed-request", "missing proof")
        without_proof, proof_text = text[:cut], text[cut + 3:]
        attrs = without_proof.split(",")
        if len(attrs) < 2 or not attrs[0].startswith("c=") or not attrs[1].startswith("r="):
            return Failure("malformed-request", "expected c=binding,r=nonce,...,p=proof")
        cbind = _b64decode(attrs[0][2:])
        proof = _b64decode(proof_text)
        if cbind is None or proof is None or len(proof) != self._digest_size:
            return Failure("malformed-request", "bad base64 in channel binding or proof")
        if not hmac.compare_digest(cbind, self._cbind_input):
            return Failure("not-authorized", "channel binding mismatch")
        if attrs[1][2:] != self._nonce:
            return Failure("not-authorized", "nonce mismatch")

        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode("utf-8")
        algorithm = self._algorithm
        signature = hmac.digest(self._creds.stored_key, auth_message, algorithm)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        matches = hmac.compare_digest(hashlib.new(algorithm, client_key).digest(),
                                      self._creds.stored_key)
        if not (matches and self._known):
            return Failure("not-authorized", user=self._user or None)
        server_signature = hmac.digest(self._creds.server_key, auth_message, algorithm)
        return Success(self._user, b"v=" + base64.b64encode(server_signature))

    def _fake_credentials(self, username: str) -> ScramCredentials:
        """Stable per-process credentials for a name without an account."""
        seed = b"\0".join([self._hash_name.encode(), self._domain.encode("utf-8"),
                           username.encode("utf-8")])
        key = hmac.digest(self._secret, b"fake\0" + seed, "sha256")
        return ScramCredentials(
            salt=hmac.digest(key, b"salt", "sha256")[:16],
            iterations=self._fake_iterations,
            stored_key=hmac.digest(key, b"stored", self._algorithm),
            server_key=hmac.digest(key, b"server", self._algorithm),
        )


def _decode(message: bytes) -> str | None:
    if len(message) > MAX_MESSAGE:
        return None
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        return None
