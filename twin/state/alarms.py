"""Alarms (ISA-18.2) and the shift log: one owner for both tables.

The runtime writes alarm rows (raise, clear); the control room reads them and records the
operator's actions (acknowledge, shelve, out of service). Each change is audited in the same
transaction that makes it. Wall-clock times throughout: alarm handling is a human timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.state.base import (
    NotFound,
    Row,
    dt,
    inserted_id,
    iso,
    j,
    now_utc,
    parse_ts,
    to_json,
)
from twin.state.core import StoreCore
from twin.state.schema import ENSURED

ENSURED.append(
    (
        """CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    kind TEXT NOT NULL,
    tag TEXT,
    priority TEXT NOT NULL,
    message TEXT NOT NULL,
    response TEXT NOT NULL,
    latched INTEGER NOT NULL,        -- one-shot: stays until acknowledged (no condition to clear)
    subject TEXT,
    parent_id INTEGER,               -- the flood / connection alarm this one is grouped under
    suppressed INTEGER NOT NULL DEFAULT 0,
    raised_at TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    cleared_at TEXT,
    acked_by TEXT,
    acked_at TEXT,
    ack_note TEXT,
    shelved_by TEXT,
    shelved_until TEXT,
    shelve_reason TEXT,
    out_of_service INTEGER NOT NULL DEFAULT 0,
    service_by TEXT,
    service_reason TEXT
)""",
        "CREATE INDEX IF NOT EXISTS alarms_plant ON alarms(plant, id)",
        "CREATE INDEX IF NOT EXISTS alarms_standing ON alarms(plant, active, acked_at)",
        """CREATE TABLE IF NOT EXISTS shift_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    notes TEXT NOT NULL,
    approved TEXT NOT NULL,          -- JSON: decisions taken during the shift
    pending TEXT NOT NULL,           -- JSON: proposals and step tests left open
    standing TEXT NOT NULL,          -- JSON: standing alarms at handover
    acked_by TEXT,
    acked_at TEXT,
    ack_note TEXT
)""",
        "CREATE INDEX IF NOT EXISTS shift_log_plant ON shift_log(plant, id)",
    )
)


@dataclass(frozen=True)
class AlarmRecord:
    id: int
    plant: str
    kind: str
    tag: str | None
    priority: str
    message: str
    response: str
    latched: bool
    subject: str | None
    parent_id: int | None
    suppressed: bool
    raised_at: datetime
    active: bool
    cleared_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    ack_note: str | None
    shelved_by: str | None
    shelved_until: datetime | None
    shelve_reason: str | None
    out_of_service: bool
    service_by: str | None
    service_reason: str | None

    @classmethod
    def of(cls, r: Row) -> AlarmRecord:
        d = dict(r)
        for k in ("latched", "suppressed", "active", "out_of_service"):
            d[k] = bool(d[k])
        d["raised_at"] = dt(d["raised_at"])
        for k in ("cleared_at", "acked_at", "shelved_until"):
            d[k] = parse_ts(d[k])
        return cls(**d)

    def shelved(self, now: datetime) -> bool:
        return self.shelved_until is not None and self.shelved_until > now

    def state(self, now: datetime) -> str:
        """The ISA-18.2 state shown to the operator (a shelf past its expiry no longer hides)."""
        if self.out_of_service:
            return "out of service"
        if self.shelved(now):
            return "shelved"
        if self.suppressed:
            return "suppressed"
        if self.active:
            return "acknowledged" if self.acked_at is not None else "active"
        return "cleared" if self.acked_at is None else "normal"


@dataclass(frozen=True)
class ShiftRecord:
    id: int
    plant: str
    author: str
    at: datetime
    notes: str
    approved: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    standing: list[dict[str, Any]]
    acked_by: str | None
    acked_at: datetime | None
    ack_note: str | None

    @classmethod
    def of(cls, r: Row) -> ShiftRecord:
        d = dict(r)
        d["at"] = dt(d["at"])
        d["acked_at"] = parse_ts(d["acked_at"])
        for k in ("approved", "pending", "standing"):
            d[k] = j(d[k]) or []
        return cls(**d)


# Standing: the condition holds, or it has not been acknowledged yet (suppressed children are
# never annunciated, so they need no acknowledgement).
_STANDING = "(active = 1 OR (acked_at IS NULL AND suppressed = 0))"


class AlarmsMixin(StoreCore):
    # ---- the runtime's side --------------------------------------------------------------

    def add_alarm(
        self,
        plant: str,
        *,
        kind: str,
        tag: str | None,
        priority: str,
        message: str,
        response: str,
        latched: bool,
        actor: str,
        subject: str | None = None,
        parent_id: int | None = None,
    ) -> int:
        """A new alarm; one under a parent is recorded suppressed (audited, not annunciated)."""
        at = iso(now_utc())
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO alarms (plant, kind, tag, priority, message, response, latched, "
                "subject, parent_id, suppressed, raised_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    plant,
                    kind,
                    tag,
                    priority,
                    message,
                    response,
                    int(latched),
                    subject,
                    parent_id,
                    int(parent_id is not None),
                    at,
                ),
            )
            aid = inserted_id(cur)
            what = {"id": aid, "at": at, "kind": kind, "tag": tag, "message": message}
            what |= {"priority": priority, "parent": parent_id}
            audit_kind = "alarm" if parent_id is None else "alarm_suppressed"
            self.audit(
                c, user=actor, kind=audit_kind, plant=plant, subject=subject, what=what, why=message
            )
            return aid

    def clear_alarm(self, alarm_id: int, *, actor: str, why: str) -> None:
        """The alarm's condition has ended (it stays standing until acknowledged)."""
        with self.write() as c:
            row = c.execute("SELECT * FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
            if row is None or not row["active"]:
                return
            c.execute(
                "UPDATE alarms SET active = 0, cleared_at = ? WHERE id = ?",
                (iso(now_utc()), alarm_id),
            )
            self.audit(
                c,
                user=actor,
                kind="alarm_clear",
                plant=row["plant"],
                subject=row["subject"],
                what={"id": alarm_id, "kind": row["kind"], "tag": row["tag"]},
                why=why,
            )

    # ---- the operator's side -------------------------------------------------------------

    def get_alarm(self, alarm_id: int) -> AlarmRecord:
        rows = self.query("SELECT * FROM alarms WHERE id = ?", (alarm_id,))
        if not rows:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return AlarmRecord.of(rows[0])

    def standing_alarms(self, plant: str) -> list[AlarmRecord]:
        """Alarms whose condition holds or that await acknowledgement, newest first."""
        sql = f"SELECT * FROM alarms WHERE plant = ? AND {_STANDING} ORDER BY id DESC"
        return [AlarmRecord.of(r) for r in self.query(sql, (plant,))]

    def alarm_history(
        self, plant: str, since: datetime | None = None, limit: int = 500
    ) -> list[AlarmRecord]:
        """Alarms raised since `since` (all if None), newest first."""
        rows = self.query(
            "SELECT * FROM alarms WHERE plant = ? AND raised_at >= ? ORDER BY id DESC LIMIT ?",
            (plant, iso(since) or "", limit),
        )
        return [AlarmRecord.of(r) for r in rows]

    def alarm_action(
        self, alarm_id: int, action: str, *, user: str, note: str, fields: dict[str, Any]
    ) -> None:
        """Set an operator's fields on an alarm (ack, shelve, service), audited as `action`."""
        allowed = {
            "acked_by",
            "acked_at",
            "ack_note",
            "active",
            "cleared_at",
            "shelved_by",
            "shelved_until",
            "shelve_reason",
            "out_of_service",
            "service_by",
            "service_reason",
        }
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"alarm fields {sorted(bad)} cannot be set by an operator action")
        values = {k: iso(v) if isinstance(v, datetime) else v for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.write() as c:
            row = c.execute("SELECT * FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
            if row is None:
                raise NotFound(f"alarm {alarm_id} does not exist")
            c.execute(f"UPDATE alarms SET {sets} WHERE id = ?", (*values.values(), alarm_id))
            what = {"id": alarm_id, "kind": row["kind"], "tag": row["tag"]} | values
            self.audit(
                c,
                user=user,
                kind=action,
                plant=row["plant"],
                subject=f"alarm:{alarm_id}",
                what=what,
                why=note,
            )

    # ---- shift log -----------------------------------------------------------------------

    def add_shift_entry(
        self,
        plant: str,
        *,
        author: str,
        notes: str,
        approved: list[dict[str, Any]],
        pending: list[dict[str, Any]],
        standing: list[dict[str, Any]],
    ) -> int:
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO shift_log (plant, author, at, notes, approved, pending, standing) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    plant,
                    author,
                    iso(now_utc()),
                    notes,
                    to_json(approved),
                    to_json(pending),
                    to_json(standing),
                ),
            )
            sid = inserted_id(cur)
            what = {"approved": len(approved), "pending": len(pending), "standing": len(standing)}
            self.audit(
                c,
                user=author,
                kind="shift_handover",
                plant=plant,
                subject=f"shift:{sid}",
                what=what,
                why=notes,
            )
            return sid

    def ack_shift_entry(self, shift_id: int, *, user: str, note: str) -> None:
        with self.write() as c:
            cur = c.execute(
                "UPDATE shift_log SET acked_by = ?, acked_at = ?, ack_note = ? "
                "WHERE id = ? AND acked_by IS NULL",
                (user, iso(now_utc()), note, shift_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"shift log entry {shift_id} does not exist or is acknowledged")
            plant = c.execute("SELECT plant FROM shift_log WHERE id = ?", (shift_id,)).fetchone()
            self.audit(
                c,
                user=user,
                kind="shift_takeover",
                plant=plant[0],
                subject=f"shift:{shift_id}",
                what={"id": shift_id},
                why=note,
            )

    def get_shift_entry(self, shift_id: int) -> ShiftRecord:
        rows = self.query("SELECT * FROM shift_log WHERE id = ?", (shift_id,))
        if not rows:
            raise NotFound(f"shift log entry {shift_id} does not exist")
        return ShiftRecord.of(rows[0])

    def shift_log(self, plant: str, limit: int = 50) -> list[ShiftRecord]:
        rows = self.query(
            "SELECT * FROM shift_log WHERE plant = ? ORDER BY id DESC LIMIT ?", (plant, limit)
        )
        return [ShiftRecord.of(r) for r in rows]
