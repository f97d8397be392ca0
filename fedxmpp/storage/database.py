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

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from fedxmpp.storage.errors import ConstraintViolation, SchemaError, StorageError
from fedxmpp.storage.schema import Migration

P = ParamSpec("P")
R = TypeVar("R")

log = Logger()


class Pool(Protocol):
    """Connections and the threads that use them (``adbapi.ConnectionPool`` is one)."""

    def runInteraction(self, interaction: Callable[..., R], *args: Any, **kwargs: Any) -> Deferred[R]:
        """Run ``interaction(cursor, ...)`` in a thread; commit if it returns, roll back if it raises."""

    def close(self) -> None:
        ...


class Engine(Protocol):
    """What differs from one database server to another."""

    #: Short name used to pick engine-specific migration statements.
    name: str
    #: The DB-API 2.0 module; its ``Error`` and ``IntegrityError`` are translated.
    module: ModuleType
    #: Whether a failed statement aborts the whole transaction (PostgreSQL), so
    #: that going on after a caught :class:`ConstraintViolation` needs savepoints.
    aborts_on_error: bool

    def prepare_location(self) -> None:
        """Create whatever must exist before connecting (directories...)."""

    def make_pool(self, reactor: IReactorCore) -> Pool:
        """A connection pool whose threads are started by *reactor*."""

    def connect(self) -> Any:
        """One DB-API connection outside the pool, in autocommit mode (bulk copies)."""

    def begin(self, cursor: Any) -> None:
        """Open the transaction an interaction runs in."""

    def begin_exclusive(self, cursor: Any) -> None:
        """Open a transaction that runs alone among those opened this way, in every
        process (schema migrations), and sees what the one before it committed."""

    def begin_snapshot(self, cursor: Any) -> None:
        """Open a read-only transaction that sees one state of the whole database."""

    def rollback(self, cursor: Any) -> None:
        ...

    def streaming_cursor(self, connection: Any) -> Any:
        """A cursor of *connection* whose ``fetchmany`` reads a large result in
        parts (inside a transaction), rather than all of it at ``execute``."""

    def convert_sql(self, sql: str) -> str:
        """Rewrite portable SQL (``?`` placeholders) for this engine."""

    def reset_id_sequence_sql(self, table: str) -> str | None:
        """After rows were inserted with explicit ``id`` values, the statement that
        makes new rows' ids follow them (None if the engine needs none)."""

    def table_names_sql(self) -> str:
        """A query listing the database's tables, one name a row."""

    def describe(self) -> str:
        """Where the data lives, for log lines (never a password)."""

    def scrub(self, text: str) -> str:
        """A driver's error text with any secret of the engine's settings blanked out."""


class Transaction:
    """The cursor handed to ``*_txn`` functions.

    Only the DB-API calls stores need, with the engine's SQL conversion applied
    and an integrity error turned into :class:`ConstraintViolation`, which a
    ``*_txn`` function may catch to map to its own error.

    On an engine where a failed statement aborts the transaction, a function that
    catches a violation and goes on cannot work on the aborted transaction: the
    interaction is then run again from the start with a savepoint around each
    statement (:attr:`savepoints`), so that a failed statement undoes only itself.
    """

    __slots__ = ("_cursor", "_side", "engine", "savepoints", "aborted")

    def __init__(self, cursor: Any, engine: Engine, *, savepoints: bool = False) -> None:
        self._cursor = cursor
        # Savepoint commands go through another cursor, to leave the results of
        # the statement they wrap to the function that ran it.
        self._side = cursor.connection.cursor() if savepoints else None
        self.engine = engine
        self.savepoints = savepoints
        #: A statement failed and the engine aborted the transaction.
        self.aborted = False

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._run(self._cursor.execute, sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._run(self._cursor.executemany, sql, rows)

    def _run(self, method: Callable[[str, Any], Any], sql: str, args: Any) -> None:
        if self.aborted:
            raise _RunWithSavepoints()
        sql = self.engine.convert_sql(sql)
        side = self._side
        if side is not None:
            side.execute("SAVEPOINT txn_statement")
        try:
            method(sql, args)
        except self.engine.module.IntegrityError as e:
            if side is not None:
                side.execute("ROLLBACK TO SAVEPOINT txn_statement")
            elif self.engine.aborts_on_error:
                self.aborted = True
            raise ConstraintViolation(str(e)) from None
        if side is not None:
            side.execute("RELEASE SAVEPOINT txn_statement")

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


class _RunWithSavepoints(Exception):
    """The transaction was aborted by a violation its function caught."""


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
        :class:`StorageError`.  *func* may run more than once (an engine retries
        a transaction that conflicted with another): it must have no effect
        outside the transaction.
        """
        return await self._run(desc, self.engine.begin, func, *args, **kwargs)

    async def _run(self, desc: str, begin: Callable[[Any], None],
                   func: Callable[Concatenate[Transaction, P], R],
                   *args: P.args, **kwargs: P.kwargs) -> R:
        if self._closed:
            raise StorageError(f"{desc}: database is closed")
        engine = self.engine

        def interaction(cursor: Any) -> R:
            begin(cursor)
            txn = Transaction(cursor, engine)
            try:
                result = func(txn, *args, **kwargs)
                if not txn.aborted:
                    return result
            except _RunWithSavepoints:
                pass
            engine.rollback(cursor)
            begin(cursor)
            return func(Transaction(cursor, engine, savepoints=True), *args, **kwargs)

        try:
            return await self._pool.runInteraction(interaction)
        except engine.module.Error as e:
            error = engine.scrub(str(e))
            log.error("Database {desc} failed: {error}", desc=desc, error=error)
            raise StorageError(f"{desc}: {error}") from None

    async def migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply the migrations the database lacks, each in its own transaction.

        Safe against another process migrating at the same time: each step
        re-reads the version inside its transaction.  Returns the version.
        """
        latest = migrations[-1].version if migrations else 0
        await self._run("create schema_version", self.engine.begin_exclusive, _create_version_table_txn)
        current = await self.run_interaction("read schema version", _schema_version_txn)
        if current > latest:
            raise SchemaError(
                f"database schema version {current} is newer than this fedxmpp "
                f"supports ({latest}); upgrade fedxmpp")
        for migration in migrations:
            if migration.version <= current:
                continue
            applied = await self._run(
                f"migration {migration.version} ({migration.name})", self.engine.begin_exclusive,
                _apply_migration_txn,
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
