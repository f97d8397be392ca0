"""A small client-side SCRAM (RFC 5802) written from the RFC for tests.

Independent of fedxmpp's own code: it computes SaltedPassword itself from the
salt and iteration count the server sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _saslname(value: str) -> str:
    return value.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    def __init__(self, mechanism: str, username: str, password: str, *, nonce: str = "clientnonce123",
                 cbflag: str = "n", cb_data: bytes = b"", authzid: str = "") -> None:
        base = mechanism.removesuffix("-PLUS")
        self.algorithm = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[base]
        self.username = username
        self.password = password
        self.nonce = nonce
        self.gs2_header = f"{cbflag},{'a=' + _saslname(authzid) if authzid else ''},"
        self.cb_data = cb_data
        self.client_first_bare = f"n={_saslname(username)},r={nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2_header + self.client_first_bare).encode()

    def final(self, server_first: bytes, *, proof_override: bytes | None = None) -> bytes:
        text = server_first.decode()
        attrs = dict(item.split("=", 1) for item in text.split(","))
        assert attrs["r"].startswith(self.nonce)
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        cbind = base64.b64encode(self.gs2_header.encode() + self.cb_data).decode()
        without_proof = f"c={cbind},r={attrs['r']}"
        auth_message = f"{self.client_first_bare},{text},{without_proof}".encode()
        salted = hashlib.pbkdf2_hmac(self.algorithm, self.password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self.algorithm)
        stored_key = hashlib.new(self.algorithm, client_key).digest()
        signature = hmac.digest(stored_key, auth_message, self.algorithm)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.digest(salted, b"Server Key", self.algorithm)
        self.server_signature = hmac.digest(server_key, auth_message, self.algorithm)
        if proof_override is not None:
            proof = proof_override
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server(self, server_final: bytes) -> bool:
        return server_final == b"v=" + base64.b64encode(self.server_signature)
