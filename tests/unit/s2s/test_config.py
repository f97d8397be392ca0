"""The [s2s] section: defaults, the routes table, nameservers, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedxmpp.config import ConfigError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fedxmpp.toml"
    path.write_text('[server]\ndomains = ["example.test"]\n' + text)
    return path


def test_defaults_are_safe():
    """Without [s2s]: listen on 5269, encryption and certificate checks required,
    the system's DNS and CAs, no static routes."""
    cfg = load(None).s2s
    assert cfg.listen == ("tcp:5269",) and cfg.direct_tls == ()
    assert cfg.require_encryption and cfg.verify_certificates
    assert cfg.nameservers == () and cfg.routes == {} and cfg.ca_file == Path()


def test_routes_and_nameservers_are_read(tmp_path):
    """An inline table of routes and a list of nameservers come through as given;
    ca_file is relative to the configuration file."""
    from fedxmpp.tls import generate_self_signed
    cert, _ = generate_self_signed("ca.test", tmp_path)
    cert.rename(tmp_path / "ca.pem")
    cfg = load(write(tmp_path, '[s2s]\nroutes = {"peer.test" = "tcp:127.0.0.5:5269", "v6.test" = "tls:[::1]:5270"}\n'
                               'nameservers = ["127.0.0.1:5353", "::1", "[::1]:53"]\nca_file = "ca.pem"\n')).s2s
    assert cfg.routes == {"peer.test": "tcp:127.0.0.5:5269", "v6.test": "tls:[::1]:5270"}
    assert cfg.nameservers == ("127.0.0.1:5353", "::1", "[::1]:53")
    assert cfg.ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize("text, message", [
    ('routes = ["peer.test"]', "s2s.routes: must be a table of strings, got a list"),
    ('routes = {"peer.test" = 5269}', "s2s.routes.\"peer.test\": must be a string, got a number"),
    ('routes = {"peer.test" = "peer.test:5269"}', "must be 'tcp:HOST:PORT' (STARTTLS) or 'tls:HOST:PORT'"),
    ('routes = {"peer.test" = "tcp:127.0.0.5"}', "must end with ':PORT'"),
    ('routes = {"peer.test" = "tcp:::1:5269"}', "must write an IPv6 address in brackets"),
    ('routes = {"Peer.Test" = "tcp:127.0.0.5:5269"}', "must be written in canonical form 'peer.test'"),
    ('routes = {"example.test" = "tcp:127.0.0.5:5269"}', "is a hosted domain"),
    ('nameservers = ["dns.example:53"]', "s2s.nameservers: 'dns.example:53': names 'dns.example', which is not an IP"),
    ('nameservers = ["127.0.0.1:99999"]', "has a port outside 1 to 65535"),
    ('queue_size = 0', "s2s.queue_size: must be between 1 and 1000000"),
    ('send_timeout = 0', "s2s.send_timeout: must be positive"),
    ('listen = ["5269"]', "is not a Twisted endpoint string"),
])
def test_bad_values_name_the_key(tmp_path, text, message):
    """Each mistake is one line naming the file, the key and the problem."""
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, f"[s2s]\n{text}\n"))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "fedxmpp.toml"))
