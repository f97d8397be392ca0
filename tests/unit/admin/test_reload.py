"""Reload: which changed keys a running server takes, and certificates swapped
inside the TLS creators already handed to listeners."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock

from fedxmpp import app, config
from fedxmpp.admin.reload import ReloadFailed, merge, reload
from fedxmpp.tls import generate_self_signed

BASE = """[server]
domains = ["example.test"]
data_dir = "data"
[auth]
scram_iterations = 4096
[c2s]
listen = ["tcp:5222"]
[[components.component]]
domain = "gw.example.test"
secret = "old-secret"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fedxmpp.toml"
    path.write_text(text)
    return path


def test_merge_takes_reloadable_keys_and_names_the_others(tmp_path):
    """Limits, c2s timeouts and component secrets are taken; domains and listeners
    are refused and keep their running values."""
    old = config.load(write(tmp_path, BASE))
    new = config.load(write(tmp_path, BASE.replace('listen = ["tcp:5222"]', 'listen = ["tcp:5333"]\nidle_timeout = 900')
                            .replace('["example.test"]', '["example.test", "new.test"]')
                            .replace("old-secret", "new-secret")
                            + "[limits]\nmax_depth = 20\n"))
    effective, result = merge(old, new)
    assert sorted(result.applied) == ["c2s.idle_timeout", "components.component", "limits.max_depth"]
    assert sorted(result.refused) == ["c2s.listen", "server.domains"]
    assert effective.limits.max_depth == 20 and effective.c2s.idle_timeout == 900.0
    assert effective.components.component[0].secret == "new-secret"
    assert effective.server.domains == ("example.test",) and effective.c2s.listen == ("tcp:5222",)


def test_adding_a_component_needs_a_restart(tmp_path):
    old = config.load(write(tmp_path, BASE))
    new = config.load(write(tmp_path, BASE + '[[components.component]]\ndomain = "irc.example.test"\nsecret = "s"\n'))
    effective, result = merge(old, new)
    assert result.refused == ["components.component"] and effective.components == old.components


def _served_fingerprint(creator) -> bytes:
    connection = SSL.Connection(creator._default, None)
    return connection.get_certificate(as_cryptography=True).fingerprint(hashes.SHA256())


def test_reload_swaps_certificates_in_existing_creators_and_new_secrets(tmp_path):
    """The creator a direct TLS listener got at start-up serves the renewed
    certificate after reload; the component handshake uses the new secret."""
    path = write(tmp_path, BASE)
    srv = app.build(config.load(path), MemoryReactorClock())
    creator = srv.certificates.server_creator(alpn=[b"xmpp-client"])
    before = _served_fingerprint(creator)
    cert, _ = generate_self_signed("example.test", srv.config.tls.certificates)
    write(tmp_path, BASE.replace("old-secret", "new-secret"))
    result = reload(srv)
    assert result.applied == ["components.component"] and result.refused == []
    assert _served_fingerprint(creator) != before
    assert srv.certificates.server_creator(alpn=[b"xmpp-client"]) is creator
    assert srv.components.configured("gw.example.test").secret == "new-secret"
    assert srv.c2s.config is srv.config and srv.features.config is srv.config


def test_a_broken_file_or_certificate_changes_nothing(tmp_path):
    path = write(tmp_path, BASE)
    srv = app.build(config.load(path), MemoryReactorClock())
    running = srv.config
    path.write_text(BASE + "[limits]\nmax_depth = 2\n")
    with pytest.raises(ReloadFailed, match=r"limits\.max_depth"):
        reload(srv)
    assert srv.config is running
    path.write_text(BASE.replace("old-secret", "new-secret"))
    (srv.config.tls.certificates / "example.test.key").write_text("garbage")
    with pytest.raises(ReloadFailed, match=r"tls\.certificates: .*example\.test\.key: not a PEM private key"):
        reload(srv)
    assert srv.config is running and srv.components.configured("gw.example.test").secret == "old-secret"
