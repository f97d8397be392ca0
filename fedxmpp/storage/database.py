"""The engine-neutral database: a connection pool, transactions and migrations.

Stores keep their SQL in small synchronous ``*_txn(txn, ...)`` functions and run
them with :meth:`Database.run_interaction`, which executes the function in the
pool's thread inside one transaction: commit if it returns, roll back if it
raises.  SQL is written with ``?`` placeholders; an :class:`Engine` holds every
difference between database servers (driver, connection set-up, how to begin a
transaction, placeholder style).

A new store adds its tables with a migration module in
:mod:`fedxmpp.storage.schema`; :meth:`Database.migrate` applies what is missing.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Callable, Concatenate, Iterable, ParamSpec, Protocol, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from fedxmpp.storage.errors import ConstraintViolation, SchemaError, StorageError
from fedxmpp.storage.schema import Migration

P = ParamSpec("P")
R = TypeVar("R")

log = Logger()


class Engine(Protocol):
    """What differs from one database server to another."""

    #: Short name used to pick engine-specific migration statements.
    name: str
    #: The DB-API 2.0 module; its ``Error`` and ``IntegrityError`` are translated.
    module: ModuleType

    def prepare_location(self) -> None:
        """Create whatever must exist before connecting (directories...)."""

    def make_pool(self, reactor: IReactorCore) -> adbapi.ConnectionPool:
        """A connection pool whose threads are started by *reactor*."""

    def begin(self, cursor: Any) -> None:
        """Open the transaction an interaction runs in."""

    def convert_sql(self, sql: str) -> str:
        """Rewrite portable SQL (``?`` placeholders) for this engine."""

    def describe(self) -> str:
        """Where the data lives, for log lines (never a password)."""


class Transaction:
    """The cursor handed to ``*_txn`` functions.

    Only the DB-API calls stores need, with the engine's SQL conversion applied
    and an integrity error turned into :class:`ConstraintViolation`, which a
    ``*_txn`` function may catch to map to its own error.
    """

    __slots__ = ("_cursor", "engine")

    def __init__(self, cursor: Any, engine: Engine) -> None:
        self._cursor = cursor
        self.engine = engine

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        try:
            self._cursor.execute(self.engine.convert_sql(sql), args)
        except self.engine.module.IntegrityError as e:
            raise ConstraintViolation(str(e)) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._cursor.executemany(self.engine.convert_sql(sql), rows)
        except self.engine.module.IntegrityError as e:
            raise ConstraintViolation(str(e)) from None

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


class Database:
    """One database, reached through *engine*'s connection pool."""

    def __init__(self, engine: Engine, reactor: IReactorCore) -> None:
        self.engine = engine
        self._pool = engine.make_pool(reactor)
        self._closed = False

    async def run_interaction(self, desc: str,
                              func: Callable[Concatenate[Transaction, P], R],
                              *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``func(txn, *args, **kwargs)`` in one transaction in the pool's thread.

        *desc* names the operation in log lines and errors; it must not contain
        secrets (arguments never appear in either).  Driver errors become
        :class:`StorageError`.
        """
        if self._closed:
            raise StorageError(f"{desc}: database is closed")
        engine = self.engine

        def interaction(cursor: Any) -> R:
            engine.begin(cursor)
            return func(Transaction(cursor, engine), *args, **kwargs)

        try:
            return await self._pool.runInteraction(interaction)
        except engine.module.Error as e:
            log.error("Database {desc} failed: {error}", desc=desc, error=str(e))
            raise StorageError(f"{desc}: {e}") from None

    async def migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply the migrations the database lacks, each in its own transaction.

        Safe against another process migrating at the same time: each step
        re-reads the version inside its transaction.  Returns the version.
        """
        latest = migrations[-1].version if migrations else 0
        await self.run_interaction("create schema_version", _create_version_table_txn)
        current = await self.run_interaction("read schema version", _schema_version_txn)
        if current > latest:
            raise SchemaError(
                f"database schema version {current} is newer than this fedxmpp "
                f"supports ({latest}); upgrade fedxmpp")
        for migration in migrations:
            if migration.version <= current:
                continue
            applied = await self.run_interaction(
                f"migration {migration.version} ({migration.name})", _apply_migration_txn,
                migration, int(time.time()))
            if applied:
                log.info("Applied schema migration {version} ({name}) to {where}",
                         version=migration.version, name=migration.name,
                         where=self.engine.describe())
        return latest

    def close(self) -> None:
        """Close the pool (waits for running interactions to finish)."""
        if not self._closed:
            self._closed = True
            self._pool.close()



def _create_version_table_txn(txn: Transaction) -> None:
    txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER NOT NULL PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_ts BIGINT NOT NULL)")


def _schema_version_txn(txn: Transaction) -> int:
    txn.execute("SELECT MAX(version) FROM schema_version")
    row = txn.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _apply_migration_txn(txn: Transaction, migration: Migration, now: int) -> bool:
    if _schema_version_txn(txn) >= migration.version:
        return False  # another process got there first
    for statement in migration.statements_for(txn.engine.name):
        txn.execute(statement)
    txn.execute("INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
                (migration.version, migration.name, now))
    return True
