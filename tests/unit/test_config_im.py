"""The [im] section of the configuration."""

from __future__ import annotations

import pytest

from fedxmpp import config
from fedxmpp.config import ConfigError


def test_im_defaults():
    """Offline storage is on with a quota of 1000 messages; rosters hold 1000 items."""
    cfg = config.load(None)
    assert (cfg.im.offline_quota, cfg.im.max_roster_items) == (1000, 1000)


def test_im_values_are_read(tmp_path):
    """Both keys are read from [im]; 0 is a valid quota (offline storage off)."""
    path = tmp_path / "f.toml"
    path.write_text("[im]\noffline_quota = 0\nmax_roster_items = 50\n")
    cfg = config.load(path)
    assert (cfg.im.offline_quota, cfg.im.max_roster_items) == (0, 50)


@pytest.mark.parametrize("text, key, words", [
    ("[im]\noffline_quota = -1\n", "im.offline_quota", "between"),
    ("[im]\noffline_quota = '10'\n", "im.offline_quota", "whole number"),
    ("[im]\nmax_roster_items = 0\n", "im.max_roster_items", "between"),
    ("[im]\nroster_size = 5\n", "im.roster_size", "unknown key"),
])
def test_bad_im_values(tmp_path, text, key, words):
    """Bad [im] values are one-line errors naming the key."""
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert key in str(info.value) and words in str(info.value)
