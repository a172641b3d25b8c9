"""One small interface over the two SQL engines the reporting database runs on: `sqlite:///path` (Python's
sqlite3, nothing to install) and `postgresql://…` (psycopg 3). Statements are written once with `%s`
placeholders and always take their values as parameters; SQLite's `?` is substituted here. The calls block:
async callers run them in a thread (telephony/reporting/ingest.py)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from telephony.errors import LinkageError

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]
CONNECT_TIMEOUT = 5


class DatabaseUnavailable(LinkageError):
    error_id = "reporting_unavailable"
    status = 503


class _Cursor(Protocol):
    def execute(self, sql: Any, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: Any, params: Iterable[Sequence[Any]], /) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database:
    def __init__(self, url: str, dialect: Dialect, conn: Any, readonly: bool = False) -> None:
        self.url = url
        self.dialect = dialect
        self.readonly = readonly
        self._conn = conn

    def _sql(self, sql: str) -> str:
        return sql.replace("%s", "?") if self.dialect == "sqlite" else sql

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Everything inside commits together or not at all."""
        try:
            cursor = self._conn.cursor()
            if self.dialect == "sqlite":  # autocommit connection: the transaction is ours, DDL included
                cursor.execute("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
            yield Transaction(self, cursor)
            self._conn.commit()
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except Exception:
            pass

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def close(self) -> None:
        self._conn.close()


class Transaction:
    def __init__(self, db: Database, cursor: _Cursor) -> None:
        self.db = db
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self.db._sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(self.db._sql(sql), rows)

    def script(self, sql: str) -> None:
        """A migration's DDL, no parameters: a statement ends with `;` at a line's end before an unindented line
        (so a PL/pgSQL block, indented, stays whole)."""
        for statement in re.split(r";\n(?=\S)", sql):
            if statement.strip():
                self._cursor.execute(statement)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(self.db._sql(sql), params)
        return [tuple(row) for row in self._cursor.fetchall()]


def dialect_of(url: str) -> Dialect:
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise ValueError("a reporting URL is sqlite:///PATH or postgresql://…")


def resolve(url: str, base_dir: str) -> str:
    """A relative SQLite path is read from `base_dir` (the site file's folder)."""
    if url.startswith("sqlite:///") and base_dir and not Path(url[len("sqlite:///"):]).is_absolute():
        return "sqlite:///" + str(Path(base_dir) / url[len("sqlite:///"):])
    return url


def connect(url: str, readonly: bool = False) -> Database:
    """Open the database; DatabaseUnavailable when it cannot be reached (the message never holds a password)."""
    dialect = dialect_of(url)
    try:
        if dialect == "sqlite":
            return Database(url, dialect, _sqlite(url[len("sqlite:///"):], readonly), readonly)
        import psycopg

        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=False)
        if readonly:
            conn.read_only = True
        return Database(url, dialect, conn, readonly)
    except (sqlite3.Error, OSError) as exc:
        raise DatabaseUnavailable(f"the reporting database cannot be opened: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            raise DatabaseUnavailable(f"the reporting database cannot be reached: {type(exc).__name__}") from exc
        raise


def _sqlite(path: str, readonly: bool) -> sqlite3.Connection:
    if not path:
        raise sqlite3.OperationalError("no file named")
    if readonly:
        return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT,
                               isolation_level=None, check_same_thread=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=CONNECT_TIMEOUT, isolation_level=None,
                           check_same_thread=False)  # one worker at a time, each call in a thread
    conn.execute("PRAGMA journal_mode=WAL")  # readers (the report, the other platform) never block ingest
    return conn
