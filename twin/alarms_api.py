"""What the control room may do with alarms and the shift log, checked like twin.api: every
function takes the acting session and checks its stored role itself (twin.auth.require);
every change is audited in the same transaction that makes it.

Operators acknowledge and shelve (ISA-18.2: shelving is temporary, with a reason and an
expiry); taking an alarm out of service is an engineer's decision. A shift handover is written
by one operator and acknowledged by the next, who must be someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from twin.auth import Role, require
from twin.errors import BadInput
from twin.state import Store, iso, now_utc
from twin.state.alarms import AlarmRecord, ShiftRecord

if TYPE_CHECKING:
    from twin.auth import Session


@dataclass(frozen=True)
class ShelvingPolicy:
    """How long an alarm may be shelved."""

    max_minutes: float = 12 * 60.0
    """At most one twelve-hour shift: a shelf must not outlive the person who set it."""


SHELVING = ShelvingPolicy()


def _reason(text: str, action: str) -> str:
    if not text.strip():
        raise BadInput(f"{action}: a reason is required (it goes to the audit log)")
    return text.strip()


def _alarm(store: Store, alarm_id: int, action: str) -> AlarmRecord:
    a = store.get_alarm(int(alarm_id))
    if a.suppressed:
        raise BadInput(
            f"{action}: alarm {a.id} is grouped under alarm {a.parent_id}; act on that one"
        )
    return a


# ---- alarms ----------------------------------------------------------------------------


def acknowledge(store: Store, user: Session, alarm_id: int, note: str = "") -> None:
    """Acknowledge an alarm. A one-shot (latched) alarm has no condition to clear, so its
    acknowledgement also returns it to normal."""
    who = require(store, user, Role.OPERATOR, "acknowledge an alarm")
    a = _alarm(store, alarm_id, "acknowledge")
    if a.acked_at is not None:
        raise BadInput(f"acknowledge: alarm {a.id} was acknowledged by {a.acked_by} already")
    now = now_utc()
    fields: dict[str, Any] = {"acked_by": who.name, "acked_at": now, "ack_note": note.strip()}
    if a.latched and a.active:
        fields |= {"active": 0, "cleared_at": now}
    store.alarm_action(a.id, "alarm_ack", user=who.name, note=note.strip(), fields=fields)


def shelve(store: Store, user: Session, alarm_id: int, minutes: float, reason: str) -> datetime:
    """Hide an alarm from the banner and the standing count until the returned time."""
    who = require(store, user, Role.OPERATOR, "shelve an alarm")
    why = _reason(reason, "shelve")
    try:
        m = float(minutes)
    except (TypeError, ValueError):
        raise BadInput(f"shelve: minutes {minutes!r} is not a number") from None
    if not 0 < m <= SHELVING.max_minutes:
        raise BadInput(f"shelve: minutes must be in (0, {SHELVING.max_minutes:g}]; got {m:g}")
    a = _alarm(store, alarm_id, "shelve")
    until = now_utc() + timedelta(minutes=m)
    fields = {"shelved_by": who.name, "shelved_until": until, "shelve_reason": why}
    store.alarm_action(a.id, "alarm_shelve", user=who.name, note=why, fields=fields)
    return until


def unshelve(store: Store, user: Session, alarm_id: int, note: str = "") -> None:
    who = require(store, user, Role.OPERATOR, "unshelve an alarm")
    a = _alarm(store, alarm_id, "unshelve")
    if not a.shelved(now_utc()):
        raise BadInput(f"unshelve: alarm {a.id} is not shelved")
    fields = {"shelved_until": now_utc()}
    store.alarm_action(a.id, "alarm_unshelve", user=who.name, note=note.strip(), fields=fields)


def set_in_service(
    store: Store, user: Session, alarm_id: int, in_service: bool, reason: str
) -> None:
    """Take an alarm out of service (maintenance on its instrument) or put it back."""
    action = "return an alarm to service" if in_service else "take an alarm out of service"
    who = require(store, user, Role.ENGINEER, action)
    why = _reason(reason, action)
    a = _alarm(store, alarm_id, action)
    fields = {"out_of_service": int(not in_service), "service_by": who.name, "service_reason": why}
    kind = "alarm_in_service" if in_service else "alarm_out_of_service"
    store.alarm_action(a.id, kind, user=who.name, note=why, fields=fields)


def annunciated(store: Store, plant: str, now: datetime | None = None) -> list[AlarmRecord]:
    """Standing alarms the operator must see: not shelved, out of service or suppressed."""
    now = now or now_utc()
    hidden = ("shelved", "out of service", "suppressed")
    return [a for a in store.standing_alarms(plant) if a.state(now) not in hidden]


# ---- shift handover --------------------------------------------------------------------


def handover(store: Store, user: Session, plant: str, notes: str) -> int:
    """Write the shift log entry: the notes, with what was decided since the last handover,
    what is left pending and the standing alarms filled in from the store."""
    who = require(store, user, Role.OPERATOR, "write the shift log")
    text = _reason(notes, "shift log")
    log = store.shift_log(plant, limit=1)
    since = log[0].at if log else None
    return store.add_shift_entry(
        plant,
        author=who.name,
        notes=text,
        approved=_decided_since(store, plant, since),
        pending=_pending(store, plant),
        standing=[_alarm_line(a) for a in store.standing_alarms(plant) if not a.suppressed],
    )


def take_over(store: Store, user: Session, shift_id: int, note: str = "") -> None:
    """The next operator acknowledges the handover (its author cannot)."""
    who = require(store, user, Role.OPERATOR, "acknowledge a shift handover")
    entry = store.get_shift_entry(int(shift_id))
    if entry.author == who.name:
        raise BadInput(
            f"shift log {entry.id}: written by {who.name}; the next operator acknowledges it"
        )
    if entry.acked_by is not None:
        raise BadInput(f"shift log {entry.id}: acknowledged by {entry.acked_by} already")
    store.ack_shift_entry(entry.id, user=who.name, note=note.strip())


def latest_handover(store: Store, plant: str) -> ShiftRecord | None:
    log = store.shift_log(plant, limit=1)
    return log[0] if log else None


def _decided_since(store: Store, plant: str, since: datetime | None) -> list[dict[str, Any]]:
    out = []
    for p in store.list_proposals(plant, limit=500):
        d = store.get_decision(p.id)
        if d is None or (since is not None and d.at <= since):
            continue
        out.append(
            {
                "proposal": p.id,
                "decision": d.kind,
                "by": d.user,
                "at": iso(d.at),
                "values": d.mv_values,
                "note": d.note,
                "outcome": d.applied or p.status,
            }
        )
    return out


def _pending(store: Store, plant: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    p = store.pending_proposal(plant)
    if p is not None:
        out.append(
            {
                "what": f"proposal {p.id}",
                "status": p.status,
                "expires": iso(p.expires_at),
                "summary": p.payload.get("summary", ""),
            }
        )
    for c in store.list_steptests(plant):
        if c.status in ("requested", "approved", "running"):
            out.append(
                {
                    "what": f"step test {c.id}",
                    "status": c.status,
                    "by": c.requested_by,
                    "summary": c.note,
                }
            )
    return out


def _alarm_line(a: AlarmRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "priority": a.priority,
        "kind": a.kind,
        "tag": a.tag,
        "state": a.state(now_utc()),
        "raised": iso(a.raised_at),
        "message": a.message,
    }
