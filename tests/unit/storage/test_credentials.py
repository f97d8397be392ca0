"""SCRAM credential derivation (RFC 5802 §3, RFC 7677) and password checks."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from fedxmpp.storage.credentials import (
    HASH_NAMES,
    SALT_SIZE,
    InvalidPassword,
    ScramCredentials,
    derive,
    derive_all,
    prepare_password,
    verify_password,
)

# RFC 5802 §5 and RFC 7677 §3: user "user", password "pencil", 4096 iterations.
RFC5802 = {
    "salt": "QSXCR+Q6sek8bf92",
    "auth_message": "n=user,r=fyko+d2lbbFgONRv9qkxdawL,"
                    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,"
                    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
    "proof": "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "server_signature": "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
}
RFC7677 = {
    "salt": "W22ZaJ0SNY7soEsUEjb6gQ==",
    "auth_message": "n=user,r=rOprNGfwEbeRWgbNEkqO,"
                    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
                    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "proof": "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "server_signature": "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}


@pytest.mark.parametrize("hash_name,vector,algorithm", [
    ("sha-1", RFC5802, "sha1"),
    ("sha-256", RFC7677, "sha256"),
])
def test_derive_matches_rfc_vectors(hash_name, vector, algorithm):
    """StoredKey and ServerKey derived from "pencil" reproduce the RFC's client
    proof check and server signature exactly."""
    creds = derive("pencil", hash_name, 4096, salt=base64.b64decode(vector["salt"]))
    message = vector["auth_message"].encode()
    signature = hmac.digest(creds.stored_key, message, algorithm)
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(vector["proof"]), signature))
    assert hashlib.new(algorithm, client_key).digest() == creds.stored_key
    assert base64.b64encode(hmac.digest(creds.server_key, message, algorithm)).decode() == \
        vector["server_signature"]
    assert creds.iterations == 4096


def test_default_salt_is_random_and_long_enough():
    """Without a salt, each derivation gets 16 fresh random bytes, so two
    accounts with the same password have different keys."""
    a = derive("pencil", "sha-256", 4096)
    b = derive("pencil", "sha-256", 4096)
    assert len(a.salt) == SALT_SIZE >= 16
    assert a.salt != b.salt
    assert a.stored_key != b.stored_key


def test_derive_all_covers_each_hash_with_its_own_salt():
    """derive_all gives SHA-1 and SHA-256 credentials of the right key sizes."""
    creds = derive_all("pencil", 4096)
    assert set(creds) == set(HASH_NAMES) == {"sha-1", "sha-256"}
    assert len(creds["sha-1"].stored_key) == 20
    assert len(creds["sha-256"].stored_key) == 32
    assert creds["sha-1"].salt != creds["sha-256"].salt


@pytest.mark.parametrize("hash_name", ["sha-1", "sha-256"])
def test_verify_password(hash_name):
    """verify_password accepts the password and rejects any other."""
    creds = derive("correct horse", hash_name, 4096)
    assert verify_password(creds, "correct horse")
    assert not verify_password(creds, "correct horsE")
    assert not verify_password(creds, "")


def test_password_is_prepared_with_opaquestring():
    """Passwords go through PRECIS OpaqueString: a non-ASCII space becomes a space
    and decomposed accents are composed, so either spelling authenticates."""
    salt = b"0123456789abcdef"
    assert derive("a\u2000b", "sha-256", 4096, salt) == derive("a b", "sha-256", 4096, salt)
    creds = derive("caf\u00e9", "sha-256", 4096, salt)
    assert verify_password(creds, "cafe\u0301")


@pytest.mark.parametrize("password", ["", "bad\x00char", "x" * 1025])
def test_unusable_password_is_rejected_without_quoting_it(password):
    """Empty, control-character and over-long passwords raise InvalidPassword
    whose message does not contain the password."""
    with pytest.raises(InvalidPassword) as info:
        derive(password, "sha-256", 4096)
    if password:
        assert password not in str(info.value)
        assert "bad" not in str(info.value)
    assert info.value.__cause__ is None


def test_prepare_password_returns_utf8():
    """The PBKDF2 input is the prepared password in UTF-8."""
    assert prepare_password("p\u00e4ss") == "p\u00e4ss".encode("utf-8")


def test_keys_stay_out_of_repr():
    """repr() shows salt and iterations but not StoredKey/ServerKey, so a stray
    log line cannot leak them."""
    creds = ScramCredentials(salt=b"s", iterations=4096, stored_key=b"\x01SECRETKEY",
                             server_key=b"\x02SERVERKEY")
    assert "SECRETKEY" not in repr(creds) and "SERVERKEY" not in repr(creds)
    assert "4096" in repr(creds)


def test_unknown_hash_and_bad_parameters_raise():
    """Only sha-1 and sha-256 exist; iterations and an explicit salt must be sane."""
    with pytest.raises(ValueError):
        derive("pencil", "sha-512", 4096)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        derive("pencil", "sha-256", 0)
    with pytest.raises(ValueError):
        derive("pencil", "sha-256", 4096, salt=b"")
