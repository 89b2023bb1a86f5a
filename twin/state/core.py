"""The state store's connection: transactions, migrations and the audit entry point.

One SQLite file per twin home (`Home.state_db`) shared by the runtime, the control room and the
CLI, each in its own process. WAL mode lets readers run beside the one writer; every write is a
short `BEGIN IMMEDIATE` transaction (the writer lock is taken up front, so two processes never
deadlock upgrading a read lock) and `busy_timeout` makes the others wait instead of failing.
Every state change appends its audit entry in the same transaction, so the audit log and the
state can never disagree.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twin import audit
from twin.paths import Home
from twin.state.base import StoreConfig, StoreError
from twin.state.schema import ENSURED, MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION


class StoreCore:
    """The connection of one state store. Safe to open from several processes at once."""

    def __init__(self, path: Path | str, config: StoreConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or StoreConfig()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per store object, shared between threads (Streamlit runs scripts in
        # threads) behind a lock; autocommit mode so that we control transactions explicitly.
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path),
                timeout=self.config.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the state store: {exc}") from exc

    @classmethod
    def open(cls, home: Home | Path | str | None = None) -> Any:
        """The store of a twin home (a Home, its folder, or the default home)."""
        h = home if isinstance(home, Home) else Home.at(home)
        return cls(h.state_db)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions ------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction: the writer lock is taken at BEGIN, so no deadlocks."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self.write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this program's "
                    f"({SCHEMA_VERSION}); upgrade the program"
                )
            if version < 1:
                for statement in SCHEMA_V1.split(";"):
                    if statement.strip():
                        c.execute(statement)
                audit.create_schema(c)
                version = 1
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v]:
                    c.execute(statement)
            c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            for statements in ENSURED:
                for statement in statements:
                    c.execute(statement)
            # Every open puts back append-only triggers someone dropped (IF NOT EXISTS).
            audit.create_schema(c)

    @property
    def schema_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = 'schema_version'")[0][0])

    # ---- audit -------------------------------------------------------------------------

    def audit(
        self,
        c: sqlite3.Connection,
        *,
        user: str,
        kind: str,
        plant: str | None = None,
        subject: str | None = None,
        what: dict[str, Any] | None = None,
        why: str = "",
    ) -> int:
        """Append an audit entry inside the caller's write transaction."""
        return audit.append(
            c, user=user, kind=kind, plant=plant, subject=subject, what=what or {}, why=why
        )

    def log_event(
        self,
        *,
        user: str,
        kind: str,
        plant: str | None = None,
        subject: str | None = None,
        what: dict[str, Any] | None = None,
        why: str = "",
    ) -> int:
        """Append an audit entry on its own (alarms, mode changes, runtime start/stop)."""
        with self.write() as c:
            return self.audit(
                c, user=user, kind=kind, plant=plant, subject=subject, what=what, why=why
            )
