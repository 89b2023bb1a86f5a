"""Operator limits, incidents and the runtime's status row: one owner for each table."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, cast

from twin.state.base import dt, inserted_id, iso, j, now_utc, parse_ts, to_json
from twin.state.core import StoreCore
from twin.state.records import IncidentRecord, RuntimeStatus


class PlantStateMixin(StoreCore):
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

    def add_operator_limits(
        self,
        plant: str,
        tag: str,
        lo: float,
        hi: float,
        *,
        user: str,
        reason: str,
        before: tuple[float, float],
    ) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO operator_limits (plant, tag, lo, hi, user, at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (plant, tag, lo, hi, user, iso(now_utc()), reason),
            )
            self.audit(
                c,
                user=user,
                kind="operator_limits",
                plant=plant,
                subject=f"tag:{tag}",
                what={"from": list(before), "to": [lo, hi]},
                why=reason,
            )

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
                start=dt(r["start"]),
                end=dt(r["end"]),
                title=r["title"],
                notes=r["notes"],
                user=r["user"],
                at=dt(r["at"]),
            )
            for r in rows
        ]

    def add_incident(
        self, plant: str, start: datetime, end: datetime, title: str, notes: str, *, user: str
    ) -> int:
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO incidents (plant, start, end, title, notes, user, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (plant, iso(start), iso(end), title, notes, user, iso(now_utc())),
            )
            iid = inserted_id(cur)
            self.audit(
                c,
                user=user,
                kind="incident",
                plant=plant,
                subject=f"incident:{iid}",
                what={"start": iso(start), "end": iso(end), "title": title},
                why=notes,
            )
            return iid

    # ---- runtime status ----------------------------------------------------------------

    def put_status(self, plant: str, **fields: Any) -> None:
        """Upsert the runtime's status row (a heartbeat is a call with heartbeat_at)."""
        allowed = set(RuntimeStatus.__dataclass_fields__) - {"plant"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown status fields {sorted(bad)}")
        values = {k: _status_value(k, v) for k, v in fields.items()}
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{k} = excluded.{k}" for k in values)
        sql = f"INSERT INTO runtime_status (plant, {cols}) VALUES (?, {marks}) "
        sql += (
            f"ON CONFLICT(plant) DO UPDATE SET {updates}" if updates else "ON CONFLICT DO NOTHING"
        )
        with self.write() as c:
            c.execute(sql, (plant, *values.values()))

    def plants_on_record(self) -> list[str]:
        """Plants with a runtime status or a proposal in this store, sorted."""
        rows = self.query(
            "SELECT plant FROM runtime_status UNION SELECT plant FROM proposals ORDER BY plant"
        )
        return [r[0] for r in rows]

    def get_status(self, plant: str) -> RuntimeStatus | None:
        rows = self.query("SELECT * FROM runtime_status WHERE plant = ?", (plant,))
        if not rows:
            return None
        r = dict(rows[0])
        for k in ("heartbeat_at", "last_sample_ts"):
            r[k] = parse_ts(r[k])
        r["connected"] = None if r["connected"] is None else bool(r["connected"])
        r["alarms"] = j(r["alarms"]) or []
        return RuntimeStatus(**r)


def _status_value(key: str, v: Any) -> Any:
    if isinstance(v, datetime):
        return iso(v)
    if key == "alarms":
        return to_json(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
