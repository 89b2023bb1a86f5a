"""The state store's connection: transactions, migrations and the audit entry point.

By default one SQLite file per twin home (`Home.state_db`) shared by the runtime, the control
room and the CLI, each in its own process. WAL mode lets readers run beside the one writer;
every write is a short `BEGIN IMMEDIATE` transaction (the writer lock is taken up front, so two
processes never deadlock upgrading a read lock) and `busy_timeout` makes the others wait.
`TWIN_STATE_URL=postgresql://...` puts the same tables in PostgreSQL for a site whose runtimes
and control rooms run on several hosts, with the same guarantees (twin.state.postgres).
Every state change appends its audit entry in the same transaction, so the audit log and the
state can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twin.audit_keys import AuditFiles
from twin.paths import Home
from twin.state import audit_log
from twin.state.base import StoreConfig, StoreError
from twin.state.db import Db, connect, is_url
from twin.state.schema import ENSURED, MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION


class StoreCore:
    """The connection of one state store. Safe to open from several processes (and, on
    PostgreSQL, several hosts) at once."""

    def __init__(
        self, target: Path | str, config: StoreConfig | None = None, *, home: Home | None = None
    ) -> None:
        self.config = config or StoreConfig()
        self.target = target
        """The SQLite file or the PostgreSQL URL this store was opened on."""
        if is_url(target):
            # The home holds what stays per host: the audit key ring and the anchor file.
            self.home = home or Home.at()
            self.path = self.home.state_db  # unused on PostgreSQL; its folder is the home
            self.db: Db = connect(target, self.config, AuditFiles.of_home(self.home))
        else:
            self.path = Path(target)
            self.home = home or Home(self.path.resolve().parent)
            self.db = connect(self.path, self.config)
        try:
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def open(cls, home: Home | Path | str | None = None, *, url: str | None = None) -> Any:
        """The store of a twin home (a Home, its folder, or the default home): `url`, else
        `TWIN_STATE_URL`, else the home's SQLite file."""
        h = home if isinstance(home, Home) else Home.at(home)
        return cls(h.state_target(url), home=h)

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.db.kind

    @property
    def audit_files(self) -> AuditFiles:
        """The audit key ring and anchor file of this store."""
        return self.db.files

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions ------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Db]:
        """A short write transaction: the writer lock is taken at BEGIN, so no deadlocks."""
        with self.db.transaction() as c:
            yield c

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
        return self.db.query(sql, params)

    def _migrate(self) -> None:
        """Bring the schema to this program's version, in one transaction (the writer lock
        keeps two processes opening a new store from migrating it twice)."""
        with self.write() as c:
            c.ddl("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{c.where}: schema version {version} is newer than this program's "
                    f"({SCHEMA_VERSION}); upgrade the program"
                )
            if version < 1:
                for statement in SCHEMA_V1.split(";"):
                    if statement.strip():
                        c.ddl(statement)
                audit_log.create_schema(c)
                version = 1
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v]:
                    c.ddl(statement)
            c.set_meta("schema_version", str(SCHEMA_VERSION))
            for statements in ENSURED:
                for statement in statements:
                    c.ddl(statement)
            # Every open puts back append-only triggers someone dropped.
            audit_log.create_schema(c)

    @property
    def schema_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = 'schema_version'")[0][0])

    # ---- audit -------------------------------------------------------------------------

    def audit_users_and_kinds(self) -> tuple[list[str], list[str]]:
        """The users and the entry kinds that occur in the audit log, sorted."""
        users = [r[0] for r in self.query("SELECT DISTINCT user FROM audit ORDER BY user")]
        kinds = [r[0] for r in self.query("SELECT DISTINCT kind FROM audit ORDER BY kind")]
        return users, kinds

    def audit(
        self,
        c: Db,
        *,
        user: str,
        kind: str,
        plant: str | None = None,
        subject: str | None = None,
        what: dict[str, Any] | None = None,
        why: str = "",
    ) -> int:
        """Append an audit entry inside the caller's write transaction."""
        return audit_log.append(
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
