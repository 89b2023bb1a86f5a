"""Shadow proposals: what a candidate twin would have proposed, interval by interval, beside
the active one (`twin serve --shadow VERSION`). The one owner of the shadow_proposals table.

Nothing here is ever written to the plant: a row is evidence for promotion, not an action, so
it is not audited one by one (the run's start and the promotion decision are)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.state.base import dt, inserted_id, iso, j, now_utc, to_json
from twin.state.core import StoreCore
from twin.state.schema import ENSURED

ENSURED.append(
    (
        """CREATE TABLE IF NOT EXISTS shadow_proposals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            plant TEXT NOT NULL,
            version TEXT NOT NULL,           -- the candidate that planned in shadow
            active_version TEXT,             -- the version serving at the time
            active_proposal_id INTEGER,      -- the active proposal of the same interval, if any
            created_at TEXT NOT NULL,        -- wall clock
            data_ts TEXT NOT NULL,           -- plant clock: newest sample both planned on
            mv_values TEXT,                  -- JSON: would-be move (NULL: no proposal)
            payload TEXT NOT NULL            -- JSON: trajectories (predicted, hold) or reason
        )""",
        "CREATE INDEX IF NOT EXISTS shadow_plant ON shadow_proposals(plant, version, id)",
    )
)


@dataclass(frozen=True)
class ShadowRecord:
    id: int
    plant: str
    version: str
    active_version: str | None
    active_proposal_id: int | None
    created_at: datetime
    data_ts: datetime
    mv_values: dict[str, float] | None
    payload: dict[str, Any]


class ShadowMixin(StoreCore):
    def add_shadow(
        self,
        *,
        plant: str,
        version: str,
        active_version: str | None,
        active_proposal_id: int | None,
        data_ts: datetime,
        mv_values: Mapping[str, float] | None,
        payload: Mapping[str, Any],
    ) -> int:
        """Record one interval's would-be proposal of a shadow candidate."""
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO shadow_proposals (plant, version, active_version, "
                "active_proposal_id, created_at, data_ts, mv_values, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    plant,
                    version,
                    active_version,
                    active_proposal_id,
                    iso(now_utc()),
                    iso(data_ts),
                    None if mv_values is None else to_json(dict(mv_values)),
                    to_json(dict(payload)),
                ),
            )
            return inserted_id(cur)

    def list_shadow(self, plant: str, version: str, limit: int = 10_000) -> list[ShadowRecord]:
        """The candidate's shadow rows on this plant, oldest first."""
        rows = self.query(
            "SELECT * FROM (SELECT * FROM shadow_proposals WHERE plant = ? AND version = ? "
            "ORDER BY id DESC LIMIT ?) AS newest ORDER BY id",
            (plant, version, limit),
        )
        return [
            ShadowRecord(
                id=int(r["id"]),
                plant=r["plant"],
                version=r["version"],
                active_version=r["active_version"],
                active_proposal_id=r["active_proposal_id"],
                created_at=dt(r["created_at"]),
                data_ts=dt(r["data_ts"]),
                mv_values=j(r["mv_values"]),
                payload=j(r["payload"]) or {},
            )
            for r in rows
        ]
