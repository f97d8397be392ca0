"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedxmpp.config import Config, load

# The RFC 7677 minimum: real PBKDF2, but quick.
TEST_ITERATIONS = 4096


@pytest.fixture
def storage_config_file(tmp_path: Path) -> Path:
    """A configuration hosting example.test and other.test, with data in tmp_path/data."""
    path = tmp_path / "fedxmpp.toml"
    path.write_text(
        '[server]\n'
        'domains = ["example.test", "other.test"]\n'
        'data_dir = "data"\n'
        '[auth]\n'
        f'scram_iterations = {TEST_ITERATIONS}\n',
        encoding="utf-8")
    return path


@pytest.fixture
def storage_cfg(storage_config_file: Path) -> Config:
    return load(storage_config_file)
