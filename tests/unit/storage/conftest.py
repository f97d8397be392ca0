"""An open storage on the test reactor, on each engine: every storage test runs on
SQLite and on PostgreSQL (a new database of the session's server per test)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_twisted

from fedxmpp.config import Config, load
from fedxmpp.storage import Storage, open_storage

#: For a test about SQLite itself: ``@sqlite_only`` replaces the engine parameter.
sqlite_only = pytest.mark.parametrize("storage_engine", ["sqlite"])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.interop)])
def storage_engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_cfg(storage_config_file: Path, storage_engine: str, request: pytest.FixtureRequest) -> Config:
    cfg = load(storage_config_file)
    if storage_engine == "postgres":
        url = request.getfixturevalue("postgres_url")
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, url=url))
    return cfg


@pytest_twisted.async_yield_fixture
async def storage(storage_cfg: Config) -> AsyncIterator[Storage]:
    from twisted.internet import reactor

    opened = await open_storage(storage_cfg, reactor)
    yield opened
    opened.close()
