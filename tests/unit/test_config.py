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
