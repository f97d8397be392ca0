"""The [features] and [registration] configuration sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedxmpp.config import ConfigError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fedxmpp.toml"
    path.write_text(text)
    return path


def test_defaults():
    """Registration is off, the OS is not told, limits have their documented defaults."""
    cfg = load(None)
    assert (cfg.registration.enabled, cfg.registration.max_per_ip, cfg.registration.period) == (False, 3, 3600.0)
    assert (cfg.features.version_os, cfg.features.vcard_max_size, cfg.features.blocklist_max_items) == \
        (False, 65536, 1000)


def test_values_are_read(tmp_path):
    """Every key is read from the file."""
    cfg = load(write(tmp_path, "[registration]\nenabled = true\nmax_per_ip = 5\nperiod = 60\n"
                               "[features]\nversion_os = true\nvcard_max_size = 2048\nprivate_max_size = 4096\n"
                               "private_max_items = 8\nblocklist_max_items = 50\n"))
    assert (cfg.registration.enabled, cfg.registration.max_per_ip, cfg.registration.period) == (True, 5, 60.0)
    f = cfg.features
    assert (f.version_os, f.vcard_max_size, f.private_max_size, f.private_max_items, f.blocklist_max_items) == \
        (True, 2048, 4096, 8, 50)


@pytest.mark.parametrize("text,key", [
    ("[registration]\nenabled = 'yes'\n", "registration.enabled"),
    ("[registration]\nmax_per_ip = 0\n", "registration.max_per_ip"),
    ("[registration]\nperiod = 0\n", "registration.period"),
    ("[features]\nvcard_max_size = 10\n", "features.vcard_max_size"),
    ("[features]\nprivate_max_items = 0\n", "features.private_max_items"),
    ("[features]\nblocklist_max_items = 0\n", "features.blocklist_max_items"),
    ("[features]\nno_such_key = 1\n", "features.no_such_key"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    """A bad value stops loading with one line naming the key."""
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert key in str(info.value) and "\n" not in str(info.value)
