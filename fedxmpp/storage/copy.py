"""Copying every table of one database into another, of either engine.

Both databases must be migrated to the same version first (the tables are those
the migrations create).  The source is read in one read-only snapshot and the
target written in one transaction: a copy that fails leaves the target as it
was.  Rows keep their ids, so archive order and archive ids stay; the target's
id sequences then continue after them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fedxmpp.storage.database import Database, Engine, Transaction
from fedxmpp.storage.errors import StorageError
from fedxmpp.storage.schema import Migration, load_migrations

if TYPE_CHECKING:
    from fedxmpp.config import Config

_CREATE_TABLE = re.compile(r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
ROWS_PER_BATCH = 1000


class TargetNotEmpty(StorageError):
    """The target already holds rows (and the copy was not told to replace them)."""

    def __init__(self, counts: dict[str, int]) -> None:
        filled = ", ".join(f"{table} ({n} rows)" for table, n in counts.items() if n)
        super().__init__(f"the target database is not empty: {filled}")
        self.counts = counts


def tables_of(migrations: Sequence[Migration], engine: str) -> list[str]:
    """The tables the migrations create on *engine*, in creation order (referenced
    tables before the tables referring to them)."""
    tables: list[str] = []
    for migration in migrations:
        for statement in migration.statements_for(engine):
            tables.extend(name for name in _CREATE_TABLE.findall(statement) if name not in tables)
    return tables


def copy_database(source: Engine, target: Engine, tables: Sequence[str], *, overwrite: bool = False,
                  progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every row of *tables* from *source* to *target*; rows copied per table.

    Blocking: run it in a thread.  :class:`TargetNotEmpty` (before anything is
    written) if the target has rows in any of them, unless *overwrite*, which
    deletes them first.  *progress* is called with each table and its count.
    """
    src = source.connect()
    try:
        dst = target.connect()
        try:
            return _copy(source, src, target, dst, tables, overwrite, progress)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(source: Engine, src: Any, target: Engine, dst: Any, tables: Sequence[str], overwrite: bool,
          progress: Callable[[str, int], None] | None) -> dict[str, int]:
    out = dst.cursor()
    target.begin(out)
    writer = Transaction(out, target)
    try:
        counts = {table: _count(writer, table) for table in tables}
        if any(counts.values()):
            if not overwrite:
                raise TargetNotEmpty(counts)
            for table in reversed(tables):
                writer.execute(f"DELETE FROM {table}")
        control = src.cursor()
        source.begin_snapshot(control)
        try:
            _check_every_table_is_known(Transaction(control, source), tables)
            copied = {table: _copy_table(source, src, writer, table) for table in tables}
        finally:
            source.rollback(control)
        for table, n in copied.items():
            if _count(writer, table) != n:
                raise StorageError(f"{table}: {n} rows read but {_count(writer, table)} in the target")
            if progress is not None:
                progress(table, n)
        out.execute("COMMIT")
    except BaseException:
        target.rollback(out)
        raise
    return copied


def _check_every_table_is_known(txn: Transaction, tables: Sequence[str]) -> None:
    """A table of the source that no migration creates would be left behind: refuse."""
    txn.execute(txn.engine.table_names_sql())
    unknown = sorted({str(row[0]) for row in txn.fetchall()} - set(tables) - {"schema_version"})
    if unknown:
        raise StorageError(f"the source has tables no migration creates, which would not be copied: "
                           f"{', '.join(unknown)}")


def _count(txn: Transaction, table: str) -> int:
    txn.execute(f"SELECT COUNT(*) FROM {table}")
    row = txn.fetchone()
    return int(row[0]) if row else 0


def _copy_table(source: Engine, src: Any, writer: Transaction, table: str) -> int:
    reader = source.streaming_cursor(src)
    try:
        reader.execute(f"SELECT * FROM {table}")
        columns = [str(d[0]) for d in reader.description]
        insert = (f"INSERT INTO {table} ({', '.join(columns)})"
                  f" VALUES ({', '.join('?' * len(columns))})")
        total = 0
        while rows := reader.fetchmany(ROWS_PER_BATCH):
            writer.executemany(insert, rows)
            total += len(rows)
    finally:
        reader.close()
    if "id" in columns:
        reset = writer.engine.reset_id_sequence_sql(table)
        if reset is not None:
            writer.execute(reset)
    return total


async def copy_storage(cfg: Config, target_url: str, reactor: Any, *, overwrite: bool = False,
                       progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy the storage of ``cfg.storage.url`` to the database at *target_url*.

    Both are migrated to this fedxmpp's schema first (as the server would on
    start), then every table of every migration is copied in a thread of
    *reactor*'s pool.  Rows copied per table.
    """
    from twisted.internet.threads import deferToThreadPool

    from fedxmpp.storage import engine_for, open_storage

    source = engine_for(cfg)
    target = engine_for(cfg, target_url)
    if source.describe() == target.describe():
        raise StorageError("the target is the configured storage itself")
    migrations = load_migrations()
    (await open_storage(cfg, reactor)).close()
    target.prepare_location()
    database = Database(target, reactor)
    try:
        await database.migrate(migrations)
    finally:
        database.close()
    tables = tables_of(migrations, target.name)
    if tables != tables_of(migrations, source.name):
        raise StorageError("the migrations create different tables on the two engines")
    result: dict[str, int] = await deferToThreadPool(
        reactor, reactor.getThreadPool(), copy_database, source, target, tables,
        overwrite=overwrite, progress=progress)
    return result
