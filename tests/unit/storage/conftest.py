"""An open SQLite storage on the test reactor."""

from __future__ import annotations

from typing import AsyncIterator

import pytest_twisted

from fedxmpp.config import Config
from fedxmpp.storage import Storage, open_storage


@pytest_twisted.async_yield_fixture
async def storage(storage_cfg: Config) -> AsyncIterator[Storage]:
    from twisted.internet import reactor

    opened = await open_storage(storage_cfg, reactor)
    yield opened
    opened.close()
