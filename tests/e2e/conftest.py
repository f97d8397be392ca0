"""Fixtures for the end-to-end tests: one real server shared by most tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, lines_matching

# Accounts provisioned with `fedxmpp import-users` before the shared server starts.
# Each test uses its own accounts so that tests cannot disturb one another.
USERS: dict[str, str] = {
    "alice@example.test": "alice-secret",
    "bob@example.test": "bob-secret",
    "carol@example.test": "carol-secret",
    "dave@example.test": "dave-secret",
    "eve@example.test": "eve-secret",
    "frank@example.test": "frank-secret",
    "grace@example.test": "grace-secret",
    "heidi@example.test": "heidi-secret",
    "ivan@example.test": "ivan-secret",
    "judy@example.test": "judy-secret",
    "peggy@example.test": "peggy-secret",
    "trent@example.test": "trent-secret",
    "uma@example.test": "pässwörd ✓ with spaces",
    "oscar@other.test": "oscar-secret",
    # Rosters, presence and offline messages (test_roster.py, test_presence.py, test_offline.py).
    "romeo@example.test": "romeo-secret",
    "juliet@example.test": "juliet-secret",
    "nurse@example.test": "nurse-secret",
    "tybalt@example.test": "tybalt-secret",
    "mercutio@example.test": "mercutio-secret",
    "benvolio@example.test": "benvolio-secret",
    "paris@example.test": "paris-secret",
    "rosaline@example.test": "rosaline-secret",
    "sampson@example.test": "sampson-secret",
    "gregory@example.test": "gregory-secret",
    # The everyday XEPs (test_features.py, test_blocking.py).
    "wendy@example.test": "wendy-secret",
    "victor@example.test": "victor-secret",
    "bella@example.test": "bella-secret",
    "pest@example.test": "pest-secret",
    # Stream management and client state indication (test_sm_csi.py).
    "lorenzo@example.test": "lorenzo-secret",
    "balthasar@example.test": "balthasar-secret",
    "abram@example.test": "abram-secret",
    "potpan@example.test": "potpan-secret",
    "escalus@example.test": "escalus-secret",
    # Carbons, archive and personal eventing (test_carbons.py, test_mam.py, test_pep.py).
    "viola@example.test": "viola-secret",
    "orsino@example.test": "orsino-secret",
    "olivia@example.test": "olivia-secret",
    "sebastian@example.test": "sebastian-secret",
    "antonio@example.test": "antonio-secret",
    "maria@example.test": "maria-secret",
    "toby@example.test": "toby-secret",
    "feste@example.test": "feste-secret",
    # Archive discovery as clients do it (test_mam.py).
    "valentine@example.test": "valentine-secret",
    "curio@example.test": "curio-secret",
}

# The shared server's limits, small so that the limit tests send little.
MAX_STANZA_SIZE = 20000
MAX_DEPTH = 16


def password(jid: str) -> str:
    return USERS[jid.split("/", 1)[0]]


def _server_log_problems(server: ServerProcess) -> list[str]:
    return lines_matching(server.log_text(), r"Traceback|Unhandled (error|Error)")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real `twistd -n fedxmpp`, shared by the tests that need no special configuration."""
    srv = ServerProcess(tmp_path_factory.mktemp("shared-server"),
                        overrides={"limits": {"max_stanza_size": MAX_STANZA_SIZE, "max_depth": MAX_DEPTH}})
    srv.import_users(USERS)
    srv.start()
    try:
        yield srv
    finally:
        if srv.running:
            srv.stop()
    problems = _server_log_problems(srv)
    if problems:
        raise HarnessError("the shared server logged errors:\n" + "\n".join(problems)
                           + "\n--- log tail ---\n" + srv.log_tail(120))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """A factory for a server with its own configuration, stopped after the test."""
    started: list[ServerProcess] = []

    def make(overrides: dict | None = None, users: dict[str, str] | None = None, start: bool = True) -> ServerProcess:
        srv = ServerProcess(tmp_path / f"server{len(started)}", overrides=overrides)
        if users:
            srv.import_users(users)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in started:
        if srv.running:
            try:
                srv.terminate()
            except HarnessError:
                pass
