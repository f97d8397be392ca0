"""Hooks for the whole suite.

Interop tests (``@pytest.mark.interop``, in tests/interop) run real third-party
software and skip where it is not installed; in CI (``CI=true``) such a skip is a
failure, so that CI cannot pass without having run them.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop: runs third-party software (e.g. biboumi, ngircd); "
                                       "a skip fails the run when CI=true")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and item.get_closest_marker("interop") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"interop test skipped in CI ({reason}); CI must run it: see .ci/run"
