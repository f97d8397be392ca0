"""What only the PostgreSQL engine has: its URL, connection errors, the pool's size
and recovery, migrations from several processes, and no password in any message."""

from __future__ import annotations

import dataclasses

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import globalLogPublisher

from fedxmpp.config import Config
from fedxmpp.storage import StorageError, engine_for, open_storage
from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.postgres import redact
from fedxmpp.storage.schema import load_migrations

from tests.pgserver import PASSWORD, PostgresServer

pytestmark = pytest.mark.interop


@pytest.fixture
def storage_engine() -> str:
    return "postgres"


def _with_url(cfg: Config, url: str, **storage: object) -> Config:
    return dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, url=url, **storage))


def _scalar_txn(txn: Transaction, sql: str) -> object:
    txn.execute(sql)
    row = txn.fetchone()
    return row[0] if row else None


def test_redact_hides_only_the_password():
    assert redact("postgresql://u:s3cret@h:5/db?sslmode=require") == "postgresql://u:***@h:5/db?sslmode=require"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_one_line_without_the_password(storage_cfg, postgres_server: PostgresServer):
    """Authentication failure: a StorageError of one line that says so and names the
    server, with the password given nowhere in it (nor in any log event)."""
    wrong = "Wrong-Pass-Marker-91"
    url = postgres_server.url("postgres", password=wrong)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with pytest.raises(StorageError) as caught:
            await open_storage(_with_url(storage_cfg, url), reactor)
    finally:
        globalLogPublisher.removeObserver(events.append)
    message = str(caught.value)
    assert "\n" not in message
    assert "password authentication failed" in message
    assert f"127.0.0.1:{postgres_server.port}" in message
    assert wrong not in message and wrong not in repr(events)


@pytest_twisted.ensureDeferred
async def test_unreachable_server_is_one_line(storage_cfg, postgres_server: PostgresServer):
    """No server on the port: a StorageError of one line saying the connection failed."""
    from tests.e2e.harness import free_port

    url = f"postgresql://fedxmpp:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(StorageError) as caught:
        await open_storage(_with_url(storage_cfg, url), reactor)
    message = str(caught.value)
    assert message.startswith("cannot connect to postgresql://fedxmpp:***@127.0.0.1:")
    assert "\n" not in message and PASSWORD not in message


@pytest_twisted.ensureDeferred
async def test_missing_database_is_named(storage_cfg, postgres_server: PostgresServer):
    with pytest.raises(StorageError, match='database "no_such_db" does not exist'):
        await open_storage(_with_url(storage_cfg, postgres_server.url("no_such_db")), reactor)


def test_unreadable_url_is_a_storage_error(storage_cfg):
    """A URL libpq cannot read is refused before any connection, without its password."""
    with pytest.raises(StorageError) as caught:
        engine_for(_with_url(storage_cfg, "postgresql://u:Secret-Marker@127.0.0.1/db?no_such_option=1"))
    assert "Secret-Marker" not in str(caught.value) and "no_such_option" in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_pool_opens_at_most_pool_size_connections(storage_cfg, postgres_url):
    """With pool_size = 2, twenty interactions at once use two connections."""
    cfg = _with_url(storage_cfg, postgres_url, pool_size=2)
    storage = await open_storage(cfg, reactor)
    seen: set[int] = set()

    def backend_txn(txn: Transaction) -> None:
        txn.execute("SELECT pg_backend_pid(), pg_sleep(0.02)")
        row = txn.fetchone()
        assert row is not None
        seen.add(int(row[0]))

    try:
        await gatherResults([Deferred.fromCoroutine(storage.database.run_interaction("t", backend_txn))
                             for _ in range(20)])
    finally:
        storage.close()
    assert len(seen) == 2


@pytest_twisted.ensureDeferred
async def test_connections_the_server_closed_are_replaced(storage, postgres_server: PostgresServer, postgres_url):
    """After the server ends every connection of the pool (as in its restart), the
    next interactions run on new connections instead of failing."""
    await storage.accounts.create("alice", "example.test", "pw")
    before = await storage.database.run_interaction("t", _scalar_txn, "SELECT pg_backend_pid()")
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         f" WHERE datname = '{database}' AND application_name = 'fedxmpp'")
    assert await storage.accounts.exists("alice", "example.test")
    after = await storage.database.run_interaction("t", _scalar_txn, "SELECT pg_backend_pid()")
    assert after != before


@pytest_twisted.ensureDeferred
async def test_processes_migrating_at_once_apply_each_migration_once(storage_cfg):
    """Three databases (as three processes would) migrate one empty PostgreSQL
    database at the same time: all succeed and each migration is applied once."""
    migrations = load_migrations()
    databases = [Database(engine_for(storage_cfg), reactor) for _ in range(3)]
    try:
        versions = await gatherResults([Deferred.fromCoroutine(db.migrate(migrations)) for db in databases])
        count = await databases[0].run_interaction("t", _scalar_txn, "SELECT COUNT(*) FROM schema_version")
    finally:
        for db in databases:
            db.close()
    assert versions == [len(migrations)] * 3
    assert count == len(migrations)


@pytest_twisted.ensureDeferred
async def test_binary_values_round_trip_as_bytea(storage):
    """keyval values (BYTEA) come back byte for byte, NUL and high bytes included."""
    await storage.accounts.create("alice", "example.test", "pw")
    value = bytes(range(256)) * 3
    await storage.keyval.set("alice", "example.test", "vcard", "", value)
    assert await storage.keyval.get("alice", "example.test", "vcard") == value
    kind = await storage.database.run_interaction(
        "t", _scalar_txn, "SELECT data_type FROM information_schema.columns"
                          " WHERE table_name = 'scram_credentials' AND column_name = 'salt'")
    assert kind == "bytea"


@pytest_twisted.ensureDeferred
async def test_percent_signs_in_sql_are_literal(storage):
    """SQL is written with ? placeholders; a % in it is a character, not a psycopg placeholder."""
    assert await storage.database.run_interaction("t", _scalar_txn, "SELECT '100%' || 'x'") == "100%x"
