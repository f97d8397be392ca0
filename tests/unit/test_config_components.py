"""[components] and its array of tables [[components.component]]: values, defaults, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedxmpp import config
from fedxmpp.config import ConfigError

HEAD = '[server]\ndomains = ["example.test"]\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fedxmpp.toml"
    p.write_text(HEAD + text)
    return p


def test_defaults_listen_on_loopback_with_no_components():
    """By default the component listener is loopback port 5347, and none is configured."""
    cfg = config.load(None)
    assert cfg.components.listen == ("tcp:5347:interface=127.0.0.1",)
    assert cfg.components.component == () and cfg.components.handshake_timeout > 0


def test_components_with_privileges_and_secret_file(tmp_path):
    """Entries keep their order; secret_file is read at load (relative to the file,
    surrounding whitespace dropped); privileges default to none; replace and name."""
    (tmp_path / "irc.secret").write_text("  from-file\n")
    cfg = config.load(write(tmp_path, """
[components]
listen = ["tcp:5347:interface=127.0.0.1", "tcp6:5347:interface=\\\\:\\\\:1"]
handshake_timeout = 5

[[components.component]]
domain = "irc.example.test"
secret_file = "irc.secret"
name = "IRC"

[[components.component]]
domain = "slidge.example.test"
secret = "inline"
replace = true
[components.component.privileges]
roster = "both"
message = "outgoing"
"""))
    irc, slidge = cfg.components.component
    assert (irc.domain, irc.secret, irc.name, irc.replace) == ("irc.example.test", "from-file", "IRC", False)
    assert irc.secret_file == tmp_path / "irc.secret"
    assert (irc.privileges.roster, irc.privileges.message) == ("none", "none")
    assert (slidge.secret, slidge.replace) == ("inline", True)
    assert (slidge.privileges.roster, slidge.privileges.message) == ("both", "outgoing")
    assert cfg.components.get("slidge.example.test") is slidge and cfg.components.get("x.test") is None
    assert cfg.components.handshake_timeout == 5.0


def test_secrets_never_appear_in_repr(tmp_path):
    """Printing or logging the configuration does not show a secret."""
    cfg = config.load(write(tmp_path, '[[components.component]]\ndomain = "gw.example.test"\n'
                                      'secret = "hunter2-secret"\n'))
    assert "hunter2-secret" not in repr(cfg)


@pytest.mark.parametrize("text, key, words", [
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\n[[components.component]]\ndomain = "b.test"\n',
     "components.component[1].secret", "is required"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\nsecret_file = "f"\n',
     "components.component[0].secret", "not both"),
    ('[[components.component]]\nsecret = "x"\n', "components.component[0].domain", "is required"),
    ('[[components.component]]\ndomain = "Gw.Example.test"\nsecret = "x"\n',
     "components.component[0].domain", "canonical"),
    ('[[components.component]]\ndomain = "bad domain"\nsecret = "x"\n',
     "components.component[0].domain", "not a valid domain"),
    ('[[components.component]]\ndomain = "example.test"\nsecret = "x"\n',
     "components.component[0].domain", "hosted domain"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\n[[components.component]]\ndomain = "a.test"\n'
     'secret = "y"\n', "components.component[1].domain", "configured twice"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\nsecrt = "y"\n',
     "components.component[0].secrt", "unknown key"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = 5\n', "components.component[0].secret", "string"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\nreplace = "yes"\n',
     "components.component[0].replace", "true or false"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\n[components.component.privileges]\nroster = "all"\n',
     "components.component[0].privileges.roster", "must be one of"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\n[components.component.privileges]\n'
     'message = "incoming"\n', "components.component[0].privileges.message", "must be one of"),
    ('[[components.component]]\ndomain = "a.test"\nsecret = "x"\nprivileges = "all"\n',
     "components.component[0].privileges", "must be a table"),
    ('[components]\ncomponent = "a.test"\n', "components.component", "array of tables"),
    ('[components]\ncomponent = [1, 2]\n', "components.component", "array of tables"),
    ('[components]\nlisten = ["5347"]\n', "components.listen", "endpoint"),
    ('[components]\nhandshake_timeout = 0\n', "components.handshake_timeout", "positive"),
    ('[components]\nidle_timeout = -1\n', "components.idle_timeout", "negative"),
    ('[[components.component]]\ndomain = "a.test"\nsecret_file = "missing.secret"\n',
     "components.component[0].secret_file", "cannot read"),
])
def test_bad_component_config_is_one_line_naming_the_key_path(tmp_path, text, key, words):
    """Each mistake is one line with the file, the key path (with the entry's index,
    counted from 0) and the problem."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path) + ":")
    assert f" {key}:" in message, message
    assert words in message, message


def test_empty_secret_file(tmp_path):
    """An empty secret file stops start-up (an empty secret would be guessable)."""
    (tmp_path / "empty.secret").write_text("\n")
    with pytest.raises(ConfigError, match=r"components\.component\[0\]\.secret_file: .* is empty"):
        config.load(write(tmp_path, '[[components.component]]\ndomain = "a.test"\nsecret_file = "empty.secret"\n'))


def test_sample_component_entries_are_valid(tmp_path):
    """The commented [[components.component]] examples in etc/fedxmpp.toml load once
    uncommented (with the secret file and the CA file pointed at real files)."""
    sample = (Path(__file__).resolve().parents[2] / "etc" / "fedxmpp.toml").read_text()
    (tmp_path / "irc.secret").write_text("s\n")
    text = re.sub(r"^# (?=\[\[components|\[components\.component|[a-z_]+ = )", "", sample, flags=re.M)
    text = text.replace("/etc/fedxmpp/irc.secret", str(tmp_path / "irc.secret"))
    # ca_file is uncommented too, and read at load: point it at a real PEM file.
    from fedxmpp.tls import generate_self_signed
    ca, _ = generate_self_signed("ca.test", tmp_path)
    text = text.replace("/etc/fedxmpp/federation-ca.pem", str(ca))
    text = text.replace('data_dir = "/var/lib/fedxmpp"', f'data_dir = "{tmp_path}"')
    path = tmp_path / "sample.toml"
    path.write_text(text)
    cfg = config.load(path)
    assert [c.domain for c in cfg.components.component] == ["irc.example.test", "slidge.example.test"]
    assert cfg.components.component[1].privileges.message == "outgoing"
