"""The [muc] section of the configuration."""

from __future__ import annotations

import pytest

from fedxmpp import config
from fedxmpp.config import ConfigError


def test_off_by_default():
    cfg = config.load(None)
    assert cfg.muc.domain == "" and cfg.muc.create == "local"


def test_values_are_read(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text("[muc]\ndomain = 'conference.example.com'\ncreate = 'admins'\nadmins = ['boss@example.com']\n"
                    "rooms_per_user = 3\nmax_occupants = 50\nhistory_length = 0\noccupant_rate = 0.5\n"
                    "occupant_burst = 2\ndefault_whois = 'anyone'\ndefault_persistent = true\n")
    muc = config.load(path).muc
    assert (muc.domain, muc.create, muc.admins, muc.rooms_per_user, muc.max_occupants) == \
        ("conference.example.com", "admins", ("boss@example.com",), 3, 50)
    assert (muc.history_length, muc.occupant_rate, muc.occupant_burst, muc.default_whois, muc.default_persistent) == \
        (0, 0.5, 2, "anyone", True)


def test_the_sample_file_names_every_key():
    """etc/fedxmpp.toml documents every [muc] key (and loads)."""
    from pathlib import Path
    sample = Path(__file__).parents[2] / "etc" / "fedxmpp.toml"
    text = sample.read_text()
    section = text.split("[muc]", 1)[1].split("\n[", 1)[0]
    for f in config.MucConfig.__dataclass_fields__:
        assert f"{f} =" in section, f


@pytest.mark.parametrize("text, key, words", [
    ("[muc]\ndomain = 'Conference.Example.com'\n", "muc.domain", "canonical"),
    ("[muc]\ndomain = 'example.com'\n[server]\ndomains = ['example.com']\n", "muc.domain", "domain of its own"),
    ("[muc]\ncreate = 'everyone'\n", "muc.create", "must be one of"),
    ("[muc]\ncreate = 'admins'\n", "muc.admins", "at least one"),
    ("[muc]\nadmins = ['boss@example.com/phone']\n", "muc.admins", "bare JID"),
    ("[muc]\nrooms_per_user = 0\n", "muc.rooms_per_user", "between"),
    ("[muc]\nmax_occupants = 0\n", "muc.max_occupants", "between"),
    ("[muc]\nhistory_length = -1\n", "muc.history_length", "between"),
    ("[muc]\noccupant_rate = 0\n", "muc.occupant_rate", "positive"),
    ("[muc]\narchive_length = -1\n", "muc.archive_length", "between"),
    ("[muc]\narchive_page = 0\n", "muc.archive_page", "between"),
    ("[muc]\noccupant_burst = 0\n", "muc.occupant_burst", "between"),
    ("[muc]\nvcard_max_size = 100\n", "muc.vcard_max_size", "between"),
    ("[muc]\ndefault_archiving = 'yes'\n", "muc.default_archiving", ""),
    ("[muc]\ndefault_whois = 'everyone'\n", "muc.default_whois", "must be one of"),
    ("[muc]\nrooms = 5\n", "muc.rooms", "unknown key"),
])
def test_bad_values(tmp_path, text, key, words):
    """Bad values are one-line errors naming the key."""
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert f"{path}: {key}:" in message and words in message and "\n" not in message
