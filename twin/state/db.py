"""The state store's connection layer: one interface over SQLite and PostgreSQL.

The table modules write their SQL once, in SQLite's dialect with `?` placeholders; a `Db` runs
it on its engine. What differs between the engines lives here and in `twin.state.postgres`:

- transactions: `Db.transaction()` takes the store's one writer lock at BEGIN (SQLite's
  `BEGIN IMMEDIATE`; on PostgreSQL a transaction-scoped advisory lock), so writers never
  deadlock and every transaction sees the one before it -- the audit chain stays linear and
  a decision is taken by exactly one runtime, whichever engine and however many hosts;
- after-commit work (the audit anchor line) runs once per transaction, after COMMIT;
- DDL types, identity columns, placeholders, RETURNING and the append-only triggers.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from twin.audit_keys import AuditFiles
from twin.state.base import StoreConfig, StoreError

Params = Sequence[Any] | Mapping[str, Any]


class StoreIntegrityError(StoreError):
    """A statement broke a rule of the schema: a unique key, or the append-only audit."""


class Result(Protocol):
    """What a statement returns: its rows, how many rows it changed, an inserted row's id."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(ABC):
    """One connection to the state store, shared by the threads of a process behind a lock."""

    kind = ""
    """The engine: "sqlite" or "postgresql"."""

    def __init__(self, where: str, files: AuditFiles, config: StoreConfig) -> None:
        self.where = where
        """The store's file or URL (without a password), for messages."""
        self.files = files
        """The audit key ring and anchor file of this store."""
        self.config = config
        self.lock = threading.RLock()
        self._after: dict[object, Callable[[], None]] = {}

    # ---- what each engine provides -----------------------------------------------------

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Result:
        raise NotImplementedError

    @abstractmethod
    def ddl(self, statement: str) -> None:
        """Run one statement of the (SQLite-dialect) schema."""
        raise NotImplementedError

    @abstractmethod
    def columns(self, table: str) -> set[str]:
        raise NotImplementedError

    @abstractmethod
    def append_only(self, table: str) -> None:
        """(Re)create the triggers that refuse UPDATE and DELETE on `table`."""
        raise NotImplementedError

    def set_meta(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @abstractmethod
    def close(self) -> None:
        raise NotImplementedError

    @abstractmethod
    def _begin(self) -> None:
        raise NotImplementedError

    def _end(self, commit: bool) -> None:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        """A write transaction holding the store's writer lock from BEGIN to COMMIT."""
        with self.lock:
            self._begin()
            try:
                yield self
                self._end(commit=True)
            except BaseException:
                self._after.clear()  # nothing of a transaction that did not commit is anchored
                if self.in_transaction:  # (an engine may have ended it already)
                    self._end(commit=False)
                raise
            if self._after:
                work, self._after = self._after, {}
                for fn in work.values():
                    fn()

    def after_commit(self, fn: Callable[[], None], key: object = None) -> None:
        """Run `fn` once the current transaction commits (dropped if it rolls back); a later
        call with the same `key` replaces the earlier one. Outside a transaction: at once."""
        if self.in_transaction:
            self._after[object() if key is None else key] = fn
        else:
            fn()

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        with self.lock:
            return self.execute(sql, params).fetchall()


class SqliteDb(Db):
    """One SQLite file in WAL mode: readers beside one writer, `busy_timeout` for the others."""

    kind = "sqlite"

    def __init__(self, path: Path, config: StoreConfig) -> None:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(path), AuditFiles.of_database(path), config)
        self.path = path
        try:
            # Autocommit mode: transactions are ours; one connection shared between threads.
            self.conn = sqlite3.connect(
                str(path),
                timeout=config.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout_s * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the state store: {exc}") from exc

    def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise StoreIntegrityError(str(exc)) from exc

    def ddl(self, statement: str) -> None:
        self.conn.execute(statement)

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})").fetchall()}

    def append_only(self, table: str) -> None:
        for op in ("UPDATE", "DELETE"):
            self.conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the {table} log is append-only: {op} refused'); END"
            )

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _end(self, commit: bool) -> None:
        self.conn.execute("COMMIT" if commit else "ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction


def is_url(target: object) -> bool:
    """A PostgreSQL URL (postgresql://, postgres://) rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def connect(target: Path | str, config: StoreConfig, files: AuditFiles | None = None) -> Db:
    """The store at `target`: a PostgreSQL URL, else a SQLite file."""
    if is_url(target):
        from twin.state.postgres import PostgresDb

        return PostgresDb(str(target), config, files or AuditFiles(None, None))
    return SqliteDb(Path(target), config)
