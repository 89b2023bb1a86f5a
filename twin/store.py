"""The state store: proposals, decisions, writes, limits, users, incidents, status, step tests.

One SQLite file per twin home (`Home.state_db`) shared by the runtime, the control room and the
CLI, each in its own process. WAL mode lets readers run beside the one writer; every write is a
short `BEGIN IMMEDIATE` transaction (the writer lock is taken up front, so two processes never
deadlock upgrading a read lock) and `busy_timeout` makes the others wait instead of failing.
Every state change appends its audit entry in the same transaction, so the audit log and the
state can never disagree.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from twin import audit
from twin.errors import BadInput, TwinError
from twin.paths import Home

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

PROPOSAL_OPEN = "pending"
# Final states of a proposal; an approved one becomes "written", "refused" or "failed".
PROPOSAL_STATES = (
    "pending",
    "approved",
    "modified",
    "rejected",
    "expired",
    "superseded",
    "written",
    "refused",
    "failed",
    "advisory",
)


class StoreError(TwinError):
    """The state store could not be opened or used."""


class NotFound(BadInput):
    """A proposal, user, incident or campaign id that does not exist."""


@dataclass(frozen=True)
class StoreConfig:
    """How the state store connects."""

    busy_timeout_s: float = 15.0
    """How long a writer waits for another process's transaction before giving up."""


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The row id of the INSERT `cur` just ran."""
    # typeshed types lastrowid as optional: it is None only on a cursor that never executed.
    if cur.lastrowid is None:
        raise StoreError("the database returned no row id for an INSERT")
    return cur.lastrowid


def iso(ts: datetime | None) -> str | None:
    """One text form for every timestamp (UTC, microseconds) so that text order is time order."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts} has no timezone")
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _dt(text: str) -> datetime:
    """A NOT NULL timestamp column."""
    return datetime.fromisoformat(text)


def now_utc() -> datetime:
    return datetime.now(UTC)


def to_json(value: Any) -> str:
    """JSON with NaN/inf replaced by null (SQLite and browsers reject bare NaN)."""
    return json.dumps(_finite(value), sort_keys=True, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return iso(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proposals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    created_at TEXT NOT NULL,        -- wall clock
    data_ts TEXT NOT NULL,           -- plant clock: newest sample the proposal used
    expires_at TEXT NOT NULL,        -- plant clock
    model_version TEXT,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    mv_values TEXT NOT NULL,         -- JSON {tag: proposed value for the next interval}
    payload TEXT NOT NULL            -- JSON: the planner's whole proposal (trajectories, costs...)
);
CREATE INDEX IF NOT EXISTS proposals_plant ON proposals(plant, id);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id INTEGER NOT NULL REFERENCES proposals(id),
    kind TEXT NOT NULL CHECK (kind IN ('approve', 'modify', 'reject')),
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    mv_values TEXT,                  -- JSON: the values approved (proposal's or modified)
    note TEXT NOT NULL DEFAULT '',
    evaluation TEXT,                 -- JSON: the twin's re-evaluation of a modification
    applied TEXT                     -- NULL until the runtime has acted on it: written/refused/failed
);
CREATE UNIQUE INDEX IF NOT EXISTS one_decision ON decisions(proposal_id);
CREATE TABLE IF NOT EXISTS writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    proposal_id INTEGER,
    decision_id INTEGER,
    campaign_id INTEGER,
    step INTEGER,
    tag TEXT NOT NULL,
    requested REAL,
    written REAL,
    read_back REAL,
    status TEXT NOT NULL,            -- intent, done, mismatch, failed, refused
    reason TEXT,
    at TEXT NOT NULL,
    completed_at TEXT
);
-- At most one write per tag per approval or per campaign step, even across restarts.
CREATE UNIQUE INDEX IF NOT EXISTS one_write_per_decision ON writes(decision_id, tag)
    WHERE decision_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS one_write_per_step ON writes(campaign_id, step, tag)
    WHERE campaign_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS operator_limits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    tag TEXT NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    title TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runtime_status (
    plant TEXT PRIMARY KEY,
    mode TEXT,
    source TEXT,
    pid INTEGER,
    heartbeat_at TEXT,
    connected INTEGER,
    last_sample_ts TEXT,
    last_sample_age_s REAL,
    model_version TEXT,
    ood_score REAL,
    last_proposal_id INTEGER,
    last_reason TEXT,
    steps_done INTEGER,
    alarms TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS steptests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    design TEXT NOT NULL,            -- JSON {"moves": [{"at_s": s, "values": {tag: v}}], ...}
    status TEXT NOT NULL,            -- requested, approved, running, done, aborted, failed
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    approved_by TEXT,
    approved_at TEXT,
    started_at TEXT,                 -- plant clock
    finished_at TEXT,
    aborted_by TEXT,
    next_step INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
"""


# ---- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalRecord:
    id: int
    plant: str
    created_at: datetime
    data_ts: datetime
    expires_at: datetime
    model_version: str | None
    mode: str
    status: str
    status_reason: str | None
    mv_values: dict[str, float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    proposal_id: int
    kind: str
    user: str
    at: datetime
    mv_values: dict[str, float] | None
    note: str
    evaluation: dict[str, Any] | None
    applied: str | None


@dataclass(frozen=True)
class WriteRecord:
    id: int
    plant: str
    proposal_id: int | None
    decision_id: int | None
    campaign_id: int | None
    step: int | None
    tag: str
    requested: float | None
    written: float | None
    read_back: float | None
    status: str
    reason: str | None
    at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: str
    password_hash: str
    created_at: datetime
    created_by: str
    disabled: bool


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    plant: str
    start: datetime
    end: datetime
    title: str
    notes: str
    user: str
    at: datetime


@dataclass(frozen=True)
class StepTestRecord:
    id: int
    plant: str
    design: dict[str, Any]
    status: str
    requested_by: str
    requested_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    aborted_by: str | None
    next_step: int
    note: str


@dataclass(frozen=True)
class RuntimeStatus:
    plant: str
    mode: str | None = None
    source: str | None = None
    pid: int | None = None
    heartbeat_at: datetime | None = None
    connected: bool | None = None
    last_sample_ts: datetime | None = None
    last_sample_age_s: float | None = None
    model_version: str | None = None
    ood_score: float | None = None
    last_proposal_id: int | None = None
    last_reason: str | None = None
    steps_done: int | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)


def _j(text: str | None) -> Any:
    return json.loads(text) if text else None


def _proposal(row: sqlite3.Row) -> ProposalRecord:
    return ProposalRecord(
        id=row["id"], plant=row["plant"], created_at=_dt(row["created_at"]),
        data_ts=_dt(row["data_ts"]), expires_at=_dt(row["expires_at"]),
        model_version=row["model_version"], mode=row["mode"], status=row["status"],
        status_reason=row["status_reason"], mv_values=_j(row["mv_values"]), payload=_j(row["payload"]),
    )  # fmt: skip


def _decision(row: sqlite3.Row) -> DecisionRecord:
    return DecisionRecord(
        id=row["id"], proposal_id=row["proposal_id"], kind=row["kind"], user=row["user"],
        at=_dt(row["at"]), mv_values=_j(row["mv_values"]), note=row["note"],
        evaluation=_j(row["evaluation"]), applied=row["applied"],
    )  # fmt: skip


def _write(row: sqlite3.Row) -> WriteRecord:
    return WriteRecord(
        id=row["id"], plant=row["plant"], proposal_id=row["proposal_id"],
        decision_id=row["decision_id"], campaign_id=row["campaign_id"], step=row["step"],
        tag=row["tag"], requested=row["requested"], written=row["written"],
        read_back=row["read_back"], status=row["status"], reason=row["reason"],
        at=_dt(row["at"]), completed_at=parse_ts(row["completed_at"]),
    )  # fmt: skip


def _steptest(row: sqlite3.Row) -> StepTestRecord:
    return StepTestRecord(
        id=row["id"], plant=row["plant"], design=_j(row["design"]), status=row["status"],
        requested_by=row["requested_by"], requested_at=_dt(row["requested_at"]),
        approved_by=row["approved_by"], approved_at=parse_ts(row["approved_at"]),
        started_at=parse_ts(row["started_at"]), finished_at=parse_ts(row["finished_at"]),
        aborted_by=row["aborted_by"], next_step=row["next_step"], note=row["note"],
    )  # fmt: skip


# ---- the store -------------------------------------------------------------------------


def _select(table: str, **equal: Any) -> tuple[str, tuple[Any, ...]]:
    """`SELECT * FROM table` filtered by column = value for every value that is not None.

    Column names come from our own keyword arguments, never from user input.
    """
    given = {col: val for col, val in equal.items() if val is not None}
    where = " AND ".join(f"{col} = ?" for col in given) or "1=1"
    return f"SELECT * FROM {table} WHERE {where}", tuple(given.values())


class Store:
    """The state store of one twin home. Safe to open from several processes at once."""

    def __init__(self, path: Path | str, config: StoreConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or StoreConfig()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per store object, shared between threads (Streamlit runs scripts in
        # threads) behind a lock; autocommit mode so that we control transactions explicitly.
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=self.config.busy_timeout_s,
                isolation_level=None, check_same_thread=False,
            )  # fmt: skip
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the state store: {exc}") from exc

    @classmethod
    def open(cls, home: Home | Path | str | None = None) -> Store:
        """The store of a twin home (a Home, its folder, or the default home)."""
        h = home if isinstance(home, Home) else Home.at(home)
        return cls(h.state_db)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
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
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        c.execute(statement)
                audit.create_schema(c)
                c.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            # Every open puts back append-only triggers someone dropped (IF NOT EXISTS).
            audit.create_schema(c)

    @property
    def schema_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = 'schema_version'")[0][0])

    # ---- audit -------------------------------------------------------------------------

    def audit(
        self, c: sqlite3.Connection, *, user: str, kind: str, plant: str | None = None,
        subject: str | None = None, what: dict[str, Any] | None = None, why: str = "",
    ) -> int:  # fmt: skip
        """Append an audit entry inside the caller's write transaction."""
        return audit.append(
            c, user=user, kind=kind, plant=plant, subject=subject, what=what or {}, why=why
        )

    def log_event(
        self, *, user: str, kind: str, plant: str | None = None, subject: str | None = None,
        what: dict[str, Any] | None = None, why: str = "",
    ) -> int:  # fmt: skip
        """Append an audit entry on its own (alarms, mode changes, runtime start/stop)."""
        with self.write() as c:
            return self.audit(
                c, user=user, kind=kind, plant=plant, subject=subject, what=what, why=why
            )

    # ---- proposals ---------------------------------------------------------------------

    def add_proposal(
        self, *, plant: str, mv_values: dict[str, float], payload: dict[str, Any],
        data_ts: datetime, expires_at: datetime, model_version: str | None, mode: str,
        status: str = PROPOSAL_OPEN, actor: str = "runtime",
    ) -> int:  # fmt: skip
        """Store a new proposal; older pending proposals of the plant are superseded."""
        with self.write() as c:
            older = c.execute(
                "SELECT id FROM proposals WHERE plant = ? AND status = 'pending'", (plant,)
            ).fetchall()
            for row in older:
                c.execute(
                    "UPDATE proposals SET status = 'superseded', status_reason = ? WHERE id = ?",
                    ("a newer proposal was made", row["id"]),
                )
            cur = c.execute(
                "INSERT INTO proposals (plant, created_at, data_ts, expires_at, model_version, "
                "mode, status, mv_values, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (plant, iso(now_utc()), iso(data_ts), iso(expires_at), model_version, mode,
                 status, to_json(mv_values), to_json(payload)),
            )  # fmt: skip
            pid = inserted_id(cur)
            self.audit(
                c, user=actor, kind="proposal", plant=plant, subject=f"proposal:{pid}",
                what={"mv_values": mv_values, "data_ts": iso(data_ts), "expires_at": iso(expires_at),
                      "model_version": model_version, "mode": mode, "status": status,
                      "superseded": [r["id"] for r in older]},
                why=str(payload.get("summary", "")),
            )  # fmt: skip
            return pid

    def get_proposal(self, proposal_id: int) -> ProposalRecord:
        rows = self.query("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
        if not rows:
            raise NotFound(f"no proposal with id {proposal_id}")
        return _proposal(rows[0])

    def list_proposals(
        self, plant: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ProposalRecord]:
        """Newest first."""
        sql, params = _select("proposals", plant=plant, status=status)
        return [
            _proposal(r) for r in self.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        ]

    def pending_proposal(self, plant: str) -> ProposalRecord | None:
        rows = self.list_proposals(plant, status=PROPOSAL_OPEN, limit=1)
        return rows[0] if rows else None

    def set_proposal_status(
        self, proposal_id: int, status: str, *, actor: str, why: str = "",
        only_if: str | None = None, c: sqlite3.Connection | None = None,
    ) -> bool:  # fmt: skip
        """Move a proposal to a new status (audited); with only_if, only from that status."""
        if status not in PROPOSAL_STATES:
            raise ValueError(f"unknown proposal status {status!r}")
        if c is None:
            with self.write() as c2:
                return self.set_proposal_status(
                    proposal_id, status, actor=actor, why=why, only_if=only_if, c=c2
                )
        row = c.execute(
            "SELECT plant, status FROM proposals WHERE id = ?", (proposal_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no proposal with id {proposal_id}")
        if only_if is not None and row["status"] != only_if:
            return False
        c.execute(
            "UPDATE proposals SET status = ?, status_reason = ? WHERE id = ?",
            (status, why, proposal_id),
        )
        self.audit(
            c, user=actor, kind=f"proposal_{status}", plant=row["plant"],
            subject=f"proposal:{proposal_id}", what={"from": row["status"], "to": status}, why=why,
        )  # fmt: skip
        return True

    # ---- decisions ---------------------------------------------------------------------

    def get_decision(self, proposal_id: int) -> DecisionRecord | None:
        rows = self.query("SELECT * FROM decisions WHERE proposal_id = ?", (proposal_id,))
        return _decision(rows[0]) if rows else None

    def unapplied_approvals(self, plant: str) -> list[tuple[DecisionRecord, ProposalRecord]]:
        """Approvals and modifications the runtime has not acted on yet, oldest first."""
        rows = self.query(
            "SELECT d.*, p.id AS pid FROM decisions d JOIN proposals p ON p.id = d.proposal_id "
            "WHERE p.plant = ? AND d.kind IN ('approve', 'modify') AND d.applied IS NULL "
            "ORDER BY d.id",
            (plant,),
        )
        return [(_decision(r), self.get_proposal(r["pid"])) for r in rows]

    def mark_applied(self, c: sqlite3.Connection, decision_id: int, outcome: str) -> None:
        c.execute("UPDATE decisions SET applied = ? WHERE id = ?", (outcome, decision_id))

    # ---- writes ------------------------------------------------------------------------

    def writes_for(
        self, *, decision_id: int | None = None, campaign_id: int | None = None,
        step: int | None = None, plant: str | None = None, limit: int = 1000,
    ) -> list[WriteRecord]:  # fmt: skip
        sql, params = _select(
            "writes", decision_id=decision_id, campaign_id=campaign_id, step=step, plant=plant
        )
        return [_write(r) for r in self.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))]

    def open_write_intents(self, plant: str) -> list[WriteRecord]:
        """Writes recorded as intended but never completed: a crash between intent and result."""
        rows = self.query(
            "SELECT * FROM writes WHERE plant = ? AND status = 'intent' ORDER BY id", (plant,)
        )
        return [_write(r) for r in rows]

    # ---- operator limits ---------------------------------------------------------------

    def operator_limits(self, plant: str) -> dict[str, tuple[float, float]]:
        """Operator limits changed in the control room, newest per tag (override the spec's)."""
        rows = self.query(
            "SELECT tag, lo, hi FROM operator_limits WHERE id IN "
            "(SELECT MAX(id) FROM operator_limits WHERE plant = ? GROUP BY tag)",
            (plant,),
        )
        return {r["tag"]: (r["lo"], r["hi"]) for r in rows}

    def operator_limit_history(self, plant: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM operator_limits WHERE plant = ? ORDER BY id DESC LIMIT ?", (plant, limit)
        )
        return [dict(r) for r in rows]

    # ---- users -------------------------------------------------------------------------

    def get_user(self, name: str) -> UserRecord | None:
        rows = self.query("SELECT * FROM users WHERE name = ?", (name,))
        if not rows:
            return None
        r = rows[0]
        return UserRecord(
            name=r["name"], role=r["role"], password_hash=r["password_hash"],
            created_at=_dt(r["created_at"]), created_by=r["created_by"],
            disabled=bool(r["disabled"]),
        )  # fmt: skip

    def list_users(self) -> list[UserRecord]:
        names = [r["name"] for r in self.query("SELECT name FROM users ORDER BY name")]
        return [u for n in names if (u := self.get_user(n)) is not None]

    def count_users(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM users")[0][0])

    # ---- incidents ---------------------------------------------------------------------

    def list_incidents(self, plant: str | None = None) -> list[IncidentRecord]:
        sql, params = "SELECT * FROM incidents", cast(tuple[str, ...], ())
        if plant is not None:
            sql, params = sql + " WHERE plant = ?", (plant,)
        rows = self.query(sql + " ORDER BY id DESC", params)
        return [
            IncidentRecord(
                id=r["id"],
                plant=r["plant"],
                start=_dt(r["start"]),
                end=_dt(r["end"]),
                title=r["title"],
                notes=r["notes"],
                user=r["user"],
                at=_dt(r["at"]),
            )  # fmt: skip
            for r in rows
        ]

    # ---- runtime status ----------------------------------------------------------------

    def put_status(self, plant: str, **fields: Any) -> None:
        """Upsert the runtime's status row (a heartbeat is a call with heartbeat_at)."""
        allowed = set(RuntimeStatus.__dataclass_fields__) - {"plant"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown status fields {sorted(bad)}")
        values = {
            k: (iso(v) if isinstance(v, datetime) else to_json(v) if k == "alarms" else
                (None if isinstance(v, float) and not math.isfinite(v) else v))
            for k, v in fields.items()
        }  # fmt: skip
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{k} = excluded.{k}" for k in values)
        sql = f"INSERT INTO runtime_status (plant, {cols}) VALUES (?, {marks}) "
        sql += (
            f"ON CONFLICT(plant) DO UPDATE SET {updates}" if updates else "ON CONFLICT DO NOTHING"
        )
        with self.write() as c:
            c.execute(sql, (plant, *values.values()))

    def get_status(self, plant: str) -> RuntimeStatus | None:
        rows = self.query("SELECT * FROM runtime_status WHERE plant = ?", (plant,))
        if not rows:
            return None
        r = dict(rows[0])
        for k in ("heartbeat_at", "last_sample_ts"):
            r[k] = parse_ts(r[k])
        r["connected"] = None if r["connected"] is None else bool(r["connected"])
        r["alarms"] = _j(r["alarms"]) or []
        return RuntimeStatus(**r)

    # ---- step tests --------------------------------------------------------------------

    def get_steptest(self, campaign_id: int) -> StepTestRecord:
        rows = self.query("SELECT * FROM steptests WHERE id = ?", (campaign_id,))
        if not rows:
            raise NotFound(f"no step-test campaign with id {campaign_id}")
        return _steptest(rows[0])

    def list_steptests(
        self, plant: str | None = None, status: str | None = None
    ) -> list[StepTestRecord]:
        sql, params = _select("steptests", plant=plant, status=status)
        return [_steptest(r) for r in self.query(sql + " ORDER BY id", params)]
