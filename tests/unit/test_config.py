"""Configuration loading: defaults, validation, and one-line errors naming file and key."""

from pathlib import Path

import pytest

from fedxmpp import config
from fedxmpp.config import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fedxmpp.toml"
    p.write_text(text)
    return p


def test_embedded_defaults_serve_localhost_on_5222():
    """Without a file the server hosts localhost, listens on 5222/5223 and keeps
    its database and certificates under the data directory."""
    cfg = config.load(None)
    assert cfg.server.domains == ("localhost",)
    assert cfg.c2s.listen == ("tcp:5222",)
    assert cfg.c2s.direct_tls == ("tcp:5223",)
    assert cfg.sqlite_path == cfg.server.data_dir / "fedxmpp.sqlite3"
    assert cfg.tls.certificates == cfg.server.data_dir / "certs"


def test_sample_config_in_etc_loads(tmp_path):
    """The documented sample is itself a valid configuration."""
    sample = Path(__file__).resolve().parents[2] / "etc" / "fedxmpp.toml"
    cfg = config.load(sample)
    assert cfg.server.domains == ("example.test",)
    assert cfg.limits.max_stanza_size == 262144


def test_relative_paths_are_relative_to_the_file(tmp_path):
    """data_dir = "data" means the folder beside the config file, not the cwd."""
    cfg = config.load(write(tmp_path, '[server]\ndata_dir = "data"\n'))
    assert cfg.server.data_dir == tmp_path / "data"
    assert cfg.storage.url == f"sqlite:///{tmp_path / 'data' / 'fedxmpp.sqlite3'}"


@pytest.mark.parametrize("text, key, words", [
    ("[server]\ndomain = ['x.test']\n", "server.domain", "unknown key"),
    ("[srv]\n", "[srv]", "unknown section"),
    ("[server]\ndomains = 'x.test'\n", "server.domains", "list of strings"),
    ("[server]\ndomains = []\n", "server.domains", "at least one"),
    ("[server]\ndomains = ['Bad Domain']\n", "server.domains", "not a valid domain"),
    ("[server]\ndomains = ['Example.test']\n", "server.domains", "canonical"),
    ("[limits]\nmax_stanza_size = 'big'\n", "limits.max_stanza_size", "whole number"),
    ("[limits]\nmax_stanza_size = 100\n", "limits.max_stanza_size", "between"),
    ("[c2s]\nlisten = ['5222']\n", "c2s.listen", "endpoint"),
    ("[c2s]\nauth_timeout = -1\n", "c2s.auth_timeout", "negative"),
    ("[auth]\nscram_iterations = 1000\n", "auth.scram_iterations", "4096"),
    ("[auth]\nallow_plain = 1\n", "auth.allow_plain", "true or false"),
    ("[storage]\nurl = 'mysql://x'\n", "storage.url", "unsupported"),
    ("[storage]\nurl = 'postgresql:db'\n", "storage.url", "postgresql://USER@HOST/DATABASE"),
    ("[storage]\nurl = 'postgresql://u:pw@h:port/db'\n", "storage.url", "not a PostgreSQL URL"),
    ("[storage]\npool_size = 0\n", "storage.pool_size", "between 1 and 1000"),
    ("[server\n", "", "not valid TOML"),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, key, words):
    """Each kind of mistake is reported on one line with the file, the key and the problem."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ":")
    assert key in message
    assert words in message


def test_postgresql_url_is_accepted_and_errors_never_quote_its_password(tmp_path):
    """storage.url may name a PostgreSQL database; a bad one is reported without the password."""
    cfg = config.load(write(tmp_path, "[storage]\nurl = 'postgresql://fx:pw@127.0.0.1:5432/fx'\npool_size = 4\n"))
    assert cfg.storage.url == "postgresql://fx:pw@127.0.0.1:5432/fx" and cfg.storage.pool_size == 4
    assert cfg.sqlite_path is None
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "[storage]\nurl = 'postgresql://fx:Hidden-Marker@h:x/fx'\n"))
    assert "Hidden-Marker" not in str(info.value)


def test_missing_file_is_reported(tmp_path):
    """A config path that does not exist is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml")


def test_admin_socket_defaults_into_the_data_dir_and_may_be_moved(tmp_path):
    """server.admin_socket is <data_dir>/admin.sock unless set, relative to the file when set."""
    cfg = config.load(write(tmp_path, '[server]\ndata_dir = "data"\n'))
    assert cfg.server.admin_socket == tmp_path / "data" / "admin.sock"
    cfg = config.load(write(tmp_path, '[server]\nadmin_socket = "run/fedxmpp.sock"\n'))
    assert cfg.server.admin_socket == tmp_path / "run" / "fedxmpp.sock"


def test_admin_socket_path_too_long_for_a_unix_socket(tmp_path):
    """A socket path longer than sun_path allows is one line naming the key, at load
    (not a traceback when the server binds it)."""
    deep = "d" * 120
    path = write(tmp_path, f'[server]\ndata_dir = "{deep}"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: server.admin_socket: ") and "\n" not in message
    assert "at most 103" in message
def test_shapers_and_backpressure_have_defaults_a_person_never_hits():
    """[limits]: 1 MiB/s per client (burst 1 MiB), 2 MiB/s per server link (burst
    4 MiB), components not shaped, a stalled reader cut after 30 s; 0 = not shaped."""
    limits = config.load(None).limits
    assert (limits.c2s_rate, limits.c2s_burst) == (1 << 20, 1 << 20)
    assert (limits.s2s_rate, limits.s2s_burst) == (2 << 20, 4 << 20)
    assert limits.component_rate == 0 and limits.max_send_stall == 30.0


@pytest.mark.parametrize("text, key, words", [
    ("[limits]\nc2s_rate = -1\n", "limits.c2s_rate", "between 0 (not shaped)"),
    ("[limits]\ns2s_rate = 'fast'\n", "limits.s2s_rate", "whole number"),
    ("[limits]\nc2s_burst = 1000\n", "limits.c2s_burst", "max_stanza_size (262144)"),
    ("[limits]\ncomponent_burst = 0\n", "limits.component_burst", "between"),
    ("[limits]\nmax_send_stall = 0\n", "limits.max_send_stall", "between 1 and 3600"),
])
def test_bad_shaper_or_stall_setting_is_one_line(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}:") and words in message


@pytest.mark.parametrize("text, key, words", [
    ("[c2s]\nlisten = ['tpc:5222']\n", "c2s.listen", "unknown endpoint type 'tpc'"),
    ("[c2s]\nlisten = ['tcp:5222:interfce=127.0.0.1']\n", "c2s.listen", "unknown option 'interfce'"),
    ("[c2s]\ndirect_tls = ['tcp:52x3']\n", "c2s.direct_tls", "not valid"),
    ("[c2s]\nlisten = ['tcp:70000']\n", "c2s.listen", "outside 0 to 65535"),
    ("[s2s]\nlisten = ['tcp:port=5269:interface=::1']\n", "s2s.listen", "repeated"),
    ("[s2s]\ndirect_tls = ['unix:/tmp/s2s.sock:mode=rw']\n", "s2s.direct_tls", "not valid"),
    ("[components]\nlisten = ['tcp:5347:backlog=many']\n", "components.listen", "not valid"),
    ("[c2s]\nlisten = ['ssl:5222:privateKey=missing.pem']\n", "c2s.listen", "cannot be read"),
    ("[http]\nlisten = ['tcp:5280:interfce=127.0.0.1']\n", "http.listen", "unknown option 'interfce'"),
    ("[proxy65]\ndomain = 'proxy.example.test'\nlisten = ['tpc:7777']\n", "proxy65.listen",
     "unknown endpoint type 'tpc'"),
])
def test_listener_endpoint_typos_are_one_line(tmp_path, text, key, words):
    """Endpoint strings are parsed at load as Twisted parses them when listening, so a
    typo is one line naming the file and the key, never a traceback at start-up."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message, message


def test_unreadable_ca_file_names_the_key(tmp_path):
    """A missing, unreadable or non-PEM ca_file is one line naming s2s.ca_file, not
    OpenSSL's error tuples."""
    path = write(tmp_path, "[s2s]\nca_file = 'missing.pem'\n")
    with pytest.raises(ConfigError, match=r": s2s\.ca_file: cannot read .*missing\.pem.*No such file"):
        config.load(path)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    path = write(tmp_path, "[s2s]\nca_file = 'junk.pem'\n")
    with pytest.raises(ConfigError, match=r": s2s\.ca_file: .*junk\.pem' holds no PEM certificate"):
        config.load(path)
    path = write(tmp_path, f"[s2s]\nca_file = '{tmp_path}'\n")
    with pytest.raises(ConfigError, match=r": s2s\.ca_file: .* is a directory"):
        config.load(path)


def test_certificates_directory_must_exist_unless_inside_data_dir(tmp_path):
    """A tls.certificates directory that does not exist is an error (a typo must not
    gain a generated certificate); inside data_dir it may be created, and an existing
    directory anywhere is fine."""
    path = write(tmp_path, f"[server]\ndata_dir = 'data'\n[tls]\ncertificates = '{tmp_path}/nonexistent/dir'\n")
    cfg = config.load(path)
    with pytest.raises(ConfigError) as info:
        config.check_certificates_dir(cfg)
    assert str(info.value) == f"{path}: tls.certificates: the directory '{tmp_path}/nonexistent/dir' does not exist"
    config.check_certificates_dir(config.load(write(tmp_path, "[server]\ndata_dir = 'data'\n")))
    config.check_certificates_dir(config.load(write(tmp_path, "[server]\ndata_dir = 'data'\n"
                                                              "[tls]\ncertificates = 'data/mine'\n")))
    (tmp_path / "certs").mkdir()
    config.check_certificates_dir(config.load(write(tmp_path, "[tls]\ncertificates = 'certs'\n")))


def test_a_missing_certificates_directory_stops_the_build(tmp_path):
    """The server refuses to start (ConfigError, which twistd prints as one line)
    and creates nothing there."""
    from twisted.internet.testing import MemoryReactorClock

    from fedxmpp import app

    path = write(tmp_path, f"[server]\ndata_dir = 'data'\n[tls]\ncertificates = '{tmp_path}/nonexistent/dir'\n")
    with pytest.raises(ConfigError, match="tls.certificates"):
        app.build(config.load(path), MemoryReactorClock())
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("text, key", [
    ("[server]\nlisten_backlog = 0\n", "server.listen_backlog"),
    ("[auth]\nfailure_delay = -1\n", "auth.failure_delay"),
    ("[auth]\nblock_after = 0\n", "auth.block_after"),
    ("[auth]\nblock_time = 0\n", "auth.block_time"),
    ("[auth]\naccount_block_after = -1\n", "auth.account_block_after"),
    ("[limits]\nmax_connections_per_address = -1\n", "limits.max_connections_per_address"),
    ("[auth]\nmin_password_length = 0\n", "auth.min_password_length"),
])
def test_abuse_limit_values_are_checked(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: must be between"):
        config.load(path)


@pytest.mark.parametrize("text, key, problem", [
    ('[server]\nuser = "no-such-user-fedxmpp"\n', "server.user", "no such user 'no-such-user-fedxmpp'"),
    ('[server]\nuser = "nobody"\ngroup = "no-such-group-fedxmpp"\n', "server.group",
     "no such group 'no-such-group-fedxmpp'"),
    ('[server]\ngroup = "nogroup"\n', "server.group", "needs server.user"),
    ('[limits]\nexempt_addresses = ["300.0.0.0/8"]\n', "limits.exempt_addresses",
     "'300.0.0.0/8' is not an IP address or network"),
])
def test_user_group_and_exempt_networks_are_checked(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: {problem}$"):
        config.load(path)


def test_with_backlog_adds_the_default_to_tcp_endpoints_only():
    """TCP endpoints without a backlog get the configured one; an explicit one, or
    another kind of endpoint, is left alone."""
    assert config.with_backlog("tcp:5222", 511) == "tcp:5222:backlog=511"
    assert config.with_backlog(r"tcp6:5222:interface=\:\:1", 511) == r"tcp6:5222:interface=\:\:1:backlog=511"
    assert config.with_backlog("tcp:5222:backlog=64:interface=127.0.0.1", 511) == \
        "tcp:5222:backlog=64:interface=127.0.0.1"
    assert config.with_backlog("unix:/run/x.sock", 511) == "unix:/run/x.sock"
    defaults = config.load(None)
    assert defaults.server.listen_backlog == 511
    assert (defaults.auth.failure_delay, defaults.auth.block_after, defaults.auth.block_time) == (0.5, 20, 3600.0)
