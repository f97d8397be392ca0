"""The server's secret on disk and the keys derived from it (fedxmpp.keys)."""

from __future__ import annotations

import pytest

from fedxmpp import keys


def test_made_once_then_read(tmp_path):
    path = tmp_path / "server.key"
    first = keys.load(path, create=True)
    assert len(first) == keys.SIZE and path.stat().st_mode & 0o777 == 0o600
    assert keys.load(path, create=True) == first == keys.load(path, create=False)


def test_a_missing_or_short_file_is_refused_when_not_to_be_made(tmp_path):
    with pytest.raises(keys.SecretError, match="does not exist"):
        keys.load(tmp_path / "absent.key", create=False)
    (tmp_path / "short.key").write_bytes(b"x" * (keys.MIN_SIZE - 1))
    with pytest.raises(keys.SecretError, match="at least 16 are needed"):
        keys.load(tmp_path / "short.key", create=True)
    with pytest.raises(keys.SecretError, match="cannot create"):
        keys.load(tmp_path / "no-dir" / "server.key", create=True)


def test_derived_keys_differ_by_purpose_and_secret():
    a, b = b"a" * 32, b"b" * 32
    assert keys.derive(a, "dialback") == keys.derive(a, "dialback")
    assert keys.derive(a, "dialback") != keys.derive(a, "scram-unknown-users")
    assert keys.derive(a, "dialback") != keys.derive(b, "dialback")
