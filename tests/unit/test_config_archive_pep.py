"""The [archive] and [pep] sections of the configuration."""

from __future__ import annotations

import pytest

from fedxmpp import config
from fedxmpp.config import ConfigError


def test_defaults():
    """Archive a year with 'always' by default, pages of 250; PEP limits as documented."""
    cfg = config.load(None)
    assert (cfg.archive.retention_days, cfg.archive.default_prefs, cfg.archive.max_page) == (365, "always", 250)
    assert (cfg.pep.max_nodes, cfg.pep.max_items, cfg.pep.max_item_size) == (256, 1000, 262144)


def test_values_are_read(tmp_path):
    """Every key is read; retention 0 (keep for ever) is valid."""
    path = tmp_path / "f.toml"
    path.write_text("[archive]\nretention_days = 0\ndefault_prefs = 'roster'\nmax_page = 50\n"
                    "[pep]\nmax_nodes = 10\nmax_items = 20\nmax_item_size = 4096\n")
    cfg = config.load(path)
    assert (cfg.archive.retention_days, cfg.archive.default_prefs, cfg.archive.max_page) == (0, "roster", 50)
    assert (cfg.pep.max_nodes, cfg.pep.max_items, cfg.pep.max_item_size) == (10, 20, 4096)


@pytest.mark.parametrize("text, key, words", [
    ("[archive]\nretention_days = -1\n", "archive.retention_days", "between"),
    ("[archive]\ndefault_prefs = 'sometimes'\n", "archive.default_prefs", "must be one of"),
    ("[archive]\nmax_page = 0\n", "archive.max_page", "between"),
    ("[archive]\nmax_page = '10'\n", "archive.max_page", "whole number"),
    ("[pep]\nmax_nodes = 0\n", "pep.max_nodes", "between"),
    ("[pep]\nmax_items = 1000000\n", "pep.max_items", "between"),
    ("[pep]\nmax_item_size = 10\n", "pep.max_item_size", "between"),
    ("[pep]\nnodes = 5\n", "pep.nodes", "unknown key"),
])
def test_bad_values(tmp_path, text, key, words):
    """Bad values are one-line errors naming the key."""
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert key in str(info.value) and words in str(info.value)


def test_sample_config_documents_both_sections_with_their_defaults():
    """etc/fedxmpp.toml sets every [archive] and [pep] key, to the default value."""
    import dataclasses
    import pathlib
    import tomllib

    sample = pathlib.Path(__file__).resolve().parents[2] / "etc" / "fedxmpp.toml"
    raw = tomllib.loads(sample.read_text())
    defaults = config.load(None)
    for section in ("archive", "pep"):
        assert raw[section] == dataclasses.asdict(getattr(defaults, section)), section
