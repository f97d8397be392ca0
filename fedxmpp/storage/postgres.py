"""The PostgreSQL engine: psycopg 3 connections on a pool of threads.

The stores' SQL lives in synchronous ``*_txn`` functions (see
:mod:`fedxmpp.storage.database`), so PostgreSQL is reached the way SQLite is:
blocking psycopg calls in threads, results handed back to the reactor.  libpq
releases the GIL while it waits on the server, so N threads keep N
transactions in flight.

Every interaction runs at SERIALIZABLE: the stores were written against
SQLite, where one connection runs one transaction at a time, and read-then-write
steps (a roster version, an offline quota, a node that must not exist yet)
rely on that.  PostgreSQL gives the same guarantee to concurrent
connections by failing one of two conflicting transactions with a
serialization failure; :class:`PostgresPool` runs it again.
"""

from __future__ import annotations

import functools
import urllib.parse
from types import ModuleType
from typing import Any, Final

from fedxmpp.storage.errors import StorageError
from fedxmpp.storage.postgres_pool import PostgresPool

#: Seconds libpq waits for the server before giving up, unless the URL says.
DEFAULT_CONNECT_TIMEOUT: Final = 10
#: The advisory lock that serialises schema migrations between processes.
_SCHEMA_LOCK: Final = 0x66656478  # "fedx"


@functools.lru_cache(maxsize=1024)
def _convert_sql(sql: str) -> str:
    """``?`` placeholders numbered as PostgreSQL's own ``$1, $2...``."""
    parts = sql.split("?")
    numbered = [parts[0]]
    for n, part in enumerate(parts[1:], 1):
        numbered.append(f"${n}")
        numbered.append(part)
    return "".join(numbered)


def _driver() -> ModuleType:
    try:
        import psycopg
    except ImportError:
        raise StorageError("PostgreSQL needs psycopg 3: pip install 'fedxmpp[postgresql]'") from None
    return psycopg


def redact(url: str) -> str:
    """*url* without its password (for log lines and errors)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


class PostgresEngine:
    name = "postgres"
    #: In PostgreSQL a failed statement aborts the transaction around it.
    aborts_on_error = True

    def __init__(self, url: str, *, pool_size: int) -> None:
        self.module: ModuleType = _driver()
        self.url = url
        self.pool_size = pool_size
        self._password = urllib.parse.urlsplit(url).password or ""
        try:
            params = self.module.conninfo.conninfo_to_dict(url)
        except self.module.Error as e:
            raise StorageError(self.scrub(f"cannot read {redact(url)}: {e}")) from None
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        params.setdefault("application_name", "fedxmpp")
        self._params = params

    def describe(self) -> str:
        return redact(self.url)

    def scrub(self, text: str) -> str:
        """*text* with the URL's password, should it appear, blanked out."""
        return text.replace(self._password, "***") if self._password else text

    def prepare_location(self) -> None:
        """Nothing to create: the database is the server's."""

    def connect(self) -> Any:
        """A new connection, in autocommit mode (:meth:`begin` opens transactions);
        :class:`StorageError` in one line if the server cannot be reached or refuses.

        Its cursors send SQL with ``$n`` placeholders as it is (psycopg's RawCursor):
        psycopg parses ``%s`` queries in Python and caches only short ones, which
        made a batch of archive rows cost several times its server's work.
        """
        try:
            return self.module.connect(**self._params, autocommit=True, cursor_factory=self.module.RawCursor)
        except self.module.Error as e:
            reason = " ".join(str(e).split())
            raise StorageError(self.scrub(f"cannot connect to {self.describe()}: {reason}")) from None

    def make_pool(self, reactor: Any) -> PostgresPool:
        return PostgresPool(self, reactor, self.pool_size)

    def begin(self, cursor: Any) -> None:
        cursor.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")

    def begin_exclusive(self, cursor: Any) -> None:
        # READ COMMITTED: once the lock is ours, the next statement sees what the
        # process that held it committed (a SERIALIZABLE snapshot would predate it).
        cursor.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        cursor.execute("SELECT pg_advisory_xact_lock($1)", (_SCHEMA_LOCK,))

    def begin_snapshot(self, cursor: Any) -> None:
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def rollback(self, cursor: Any) -> None:
        cursor.execute("ROLLBACK")

    def streaming_cursor(self, connection: Any) -> Any:
        return connection.cursor(name="fedxmpp_stream")  # a server-side cursor: FETCH by parts

    def is_transient(self, error: Exception) -> bool:
        """Whether running the transaction again may succeed (a conflict with another)."""
        errors = self.module.errors
        return isinstance(error, (errors.SerializationFailure, errors.DeadlockDetected))

    def convert_sql(self, sql: str) -> str:
        return _convert_sql(sql)

    def reset_id_sequence_sql(self, table: str) -> str | None:
        """The statement that makes *table*'s ``id`` sequence continue after its
        largest id (after rows were copied in with their ids)."""
        return (f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false)"
                f" FROM {table}")

    def table_names_sql(self) -> str:
        return "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
