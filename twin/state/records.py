"""Typed rows of the state store, and the one conversion of each from its table row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from twin.state.base import Row, dt, j, parse_ts


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
    prior: float | None = None
    """The MV's live value before its move (None for refused writes and old stores)."""


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


def proposal_row(row: Row) -> ProposalRecord:
    return ProposalRecord(
        id=row["id"],
        plant=row["plant"],
        created_at=dt(row["created_at"]),
        data_ts=dt(row["data_ts"]),
        expires_at=dt(row["expires_at"]),
        model_version=row["model_version"],
        mode=row["mode"],
        status=row["status"],
        status_reason=row["status_reason"],
        mv_values=j(row["mv_values"]),
        payload=j(row["payload"]),
    )


def decision_row(row: Row) -> DecisionRecord:
    return DecisionRecord(
        id=row["id"],
        proposal_id=row["proposal_id"],
        kind=row["kind"],
        user=row["user"],
        at=dt(row["at"]),
        mv_values=j(row["mv_values"]),
        note=row["note"],
        evaluation=j(row["evaluation"]),
        applied=row["applied"],
    )


def write_row(row: Row) -> WriteRecord:
    return WriteRecord(
        id=row["id"],
        plant=row["plant"],
        proposal_id=row["proposal_id"],
        decision_id=row["decision_id"],
        campaign_id=row["campaign_id"],
        step=row["step"],
        tag=row["tag"],
        requested=row["requested"],
        written=row["written"],
        read_back=row["read_back"],
        status=row["status"],
        reason=row["reason"],
        at=dt(row["at"]),
        completed_at=parse_ts(row["completed_at"]),
        prior=row["prior"],
    )


def steptest_row(row: Row) -> StepTestRecord:
    return StepTestRecord(
        id=row["id"],
        plant=row["plant"],
        design=j(row["design"]),
        status=row["status"],
        requested_by=row["requested_by"],
        requested_at=dt(row["requested_at"]),
        approved_by=row["approved_by"],
        approved_at=parse_ts(row["approved_at"]),
        started_at=parse_ts(row["started_at"]),
        finished_at=parse_ts(row["finished_at"]),
        aborted_by=row["aborted_by"],
        next_step=row["next_step"],
        note=row["note"],
    )
