"""The SQLite engine: one serialised connection, WAL, a busy timeout.

WAL lets readers run beside a writer, and the busy timeout lets the admin
command write while the server runs: each side waits for the other's short
transactions instead of failing.  Every interaction starts with
``BEGIN IMMEDIATE`` so that it takes the write lock up front (waiting under the
busy timeout) rather than failing half-way on a read-to-write upgrade.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from twisted.enterprise import adbapi
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from fedxmpp.storage.errors import StorageError

log = Logger()

DEFAULT_BUSY_TIMEOUT: Final = 10.0


class SqliteEngine:
    name = "sqlite"
    module: ModuleType = sqlite3
    aborts_on_error = False

    def __init__(self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def scrub(self, text: str) -> str:
        return text

    def prepare_location(self) -> None:
        """Create the database's directory (0700) and empty file (0600) if missing.

        The file holds credential hashes; SQLite gives its -wal and -shm files
        the same permissions as the database file.
        """
        directory = self.path.parent
        try:
            if not directory.is_dir():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as e:
            raise StorageError(f"cannot create {e.filename or self.path}: {e.strerror}") from None

    def make_pool(self, reactor: IReactorCore) -> adbapi.ConnectionPool:
        # One connection, so one pool thread: writes are serialised in-process,
        # and the connection may be closed from the reactor thread at shutdown.
        return adbapi.ConnectionPool(
            "sqlite3", str(self.path),
            check_same_thread=False,
            isolation_level=None,  # autocommit: begin() opens transactions explicitly
            timeout=self.busy_timeout,
            cp_min=1, cp_max=1,
            cp_openfun=self._on_connect,
            cp_reactor=reactor,
        )

    def _on_connect(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warn("SQLite database {path} stays in {mode} journal mode (WAL unavailable); "
                     "the admin command may wait while the server writes",
                     path=str(self.path), mode=mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=self.busy_timeout,
                               check_same_thread=False)
        self._on_connect(conn)
        return conn

    def begin(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")

    def begin_exclusive(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")  # SQLite has one writer at a time anyway

    def begin_snapshot(self, cursor: Any) -> None:
        # In WAL mode a read transaction sees the database as of its first read.
        cursor.execute("BEGIN DEFERRED")

    def rollback(self, cursor: Any) -> None:
        cursor.execute("ROLLBACK")

    def streaming_cursor(self, connection: sqlite3.Connection) -> sqlite3.Cursor:
        return connection.cursor()  # SQLite steps through a result as it is fetched

    def convert_sql(self, sql: str) -> str:
        return sql

    def reset_id_sequence_sql(self, table: str) -> str | None:
        return None  # AUTOINCREMENT continues after the largest id inserted

    def table_names_sql(self) -> str:
        return "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
