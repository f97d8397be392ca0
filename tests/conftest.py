"""Hooks for the whole suite.

Interop tests (``@pytest.mark.interop``, in tests/interop, and every test on
PostgreSQL) run real third-party software and skip where it is not installed; in CI (``CI=true``) such a skip is a
failure, so that CI cannot pass without having run them.
"""

from __future__ import annotations

import itertools
import os
from typing import Iterator

import pytest

from tests import pgserver


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop: runs third-party software (e.g. biboumi, ngircd); "
                                       "a skip fails the run when CI=true")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pgserver.PostgresServer]:
    """One PostgreSQL server for the session (tests/pgserver.py); a test using it must
    be marked ``interop``: where PostgreSQL cannot run here it skips, and fails in CI."""
    try:
        server = pgserver.start()
    except pgserver.PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL: {e}")
    try:
        yield server
    finally:
        server.stop()


_databases = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: pgserver.PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"test_{os.getpid()}_{next(_databases)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and item.get_closest_marker("interop") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"interop test skipped in CI ({reason}); CI must run it: see .ci/run"
