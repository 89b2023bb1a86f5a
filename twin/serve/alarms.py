"""Alarms the runtime raises, managed as ISA-18.2 describes: each has a priority and an
operator response from one catalogue (ALARM_CATALOGUE), a row in the state store that the
control room shows, acknowledges and shelves, and an audit entry. A condition that persists
(a frozen sensor) is one alarm until it clears, not one per control interval.

Flood suppression: when the plant connection drops, every tag goes silent at once; the
operator gets one parent alarm (`connection_lost`) and the per-tag alarms are recorded under it,
suppressed. Likewise when one condition check brings `flood_min` or more tags at once.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twin.sample import Quality, Sample
from twin.serve.config import ACTOR
from twin.state import Store, iso, now_utc

log = logging.getLogger(__name__)

PRIORITIES: tuple[str, ...] = ("urgent", "high", "medium", "low")
"""ISA-18.2 priorities, most urgent first (the banner shows the highest standing one)."""


@dataclass(frozen=True)
class AlarmClass:
    """What an alarm kind means to the operator (the rationalisation of ISA-18.2)."""

    priority: str
    response: str
    """What the operator should do."""


ALARM_CATALOGUE: dict[str, AlarmClass] = {
    "connection_lost": AlarmClass(
        "urgent",
        "The runtime cannot hear the plant: proposals and writes are blocked. Check the plant "
        "server or gateway and the network; the runtime reconnects by itself.",
    ),
    "partial_move": AlarmClass(
        "urgent",
        "A multi-MV move was applied only in part. Check the MVs named against the plant and "
        "confirm the repair (restore or complete) the runtime made.",
    ),
    "readback_mismatch": AlarmClass(
        "high",
        "The plant holds a different value than was written. Read the MV at the plant and "
        "decide whether to correct it by hand; check for another writer or a clamp.",
    ),
    "write_failed": AlarmClass(
        "high",
        "A write to the plant failed and nothing more of the move is sent. Check the device "
        "and its permissions, then re-approve if still wanted.",
    ),
    "write_uncertain": AlarmClass(
        "high",
        "Whether a write reached the plant is unknown; the runtime settles it from the plant's "
        "fresh samples. Watch the MV and do not re-send by hand.",
    ),
    "move_unsettled": AlarmClass(
        "high",
        "A move could not be confirmed from the plant's samples. Check the MVs at the plant.",
    ),
    "sensor_fault": AlarmClass(
        "high",
        "A sensor is missing, bad, out of range or stale: proposals and writes are blocked. "
        "Check the transmitter and its communication.",
    ),
    "twin_abstains": AlarmClass(
        "medium",
        "The twin declines to propose (out of distribution or missing data); the spec's "
        "fallback acts. Watch the plant more closely until the twin proposes again.",
    ),
    "clock_jump": AlarmClass(
        "medium",
        "The plant's clock leapt forward: staleness and expiry are judged on the new clock. "
        "Check the plant server's time source.",
    ),
    "model_drift": AlarmClass(
        "low",
        "The twin's live prediction errors have grown past its model card's held-out figures "
        "(drift test; evidence in the audit log). Proposals may be worse than they look: tell "
        "the data scientist, who retrains the twin on recent history.",
    ),
    "step_test_requested": AlarmClass(
        "low",
        "The twin was retrained on history in which some MVs barely moved, and the runtime asks "
        "for a small step test on them (a staircase inside the operator limits). An engineer "
        "reviews it on the Twin page and approves or aborts it; the runtime retrains over it.",
    ),
    "runtime_error": AlarmClass(
        "medium",
        "The runtime hit an unexpected error and carries on. Tell the engineer on call; the "
        "runtime log has the details.",
    ),
}
UNKNOWN_KIND = AlarmClass(
    "high", "An alarm kind without a catalogue entry: read the message and tell the engineer."
)


def alarm_class(kind: str) -> AlarmClass:
    """The catalogue entry of a kind (an unlisted kind is high until it is rationalised)."""
    return ALARM_CATALOGUE.get(kind, UNKNOWN_KIND)


def _subject(tag: str | None) -> str | None:
    return f"tag:{tag}" if tag else None


class Alarms:
    """The runtime's alarms: `raise_` for events, `condition` for standing conditions,
    `on_batch` for the connection (GAP markers from the source)."""

    def __init__(self, store: Store, plant: str, keep: int = 20, flood_min: int = 3) -> None:
        self.store, self.plant, self.flood_min = store, plant, flood_min
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.raised = 0
        self._active: dict[tuple[str, str | None], tuple[int, str]] = {}
        """(kind, tag) of each standing condition -> (alarm id, message)."""
        self._children: dict[int, set[tuple[str, str | None]]] = {}
        """A flood parent's id -> the conditions grouped under it."""
        self._connection: int | None = None
        """The standing connection_lost alarm's id."""
        self._clear_stale()

    def _clear_stale(self) -> None:
        """Conditions a previous runtime left standing are no longer watched by anyone: clear
        them, and whatever still holds is raised afresh on its first check."""
        for alarm in self.store.standing_alarms(self.plant):
            if alarm.active and not alarm.latched:
                self._clear(alarm.id, "runtime restarted: the condition is checked afresh")

    # ---- events ------------------------------------------------------------------------

    def raise_(
        self, kind: str, tag: str | None, message: str, subject: str | None = None
    ) -> dict[str, Any]:
        """Raise an alarm now (every call is a new one: a failed write, a partial move).

        It has no condition to clear: it stands until an operator acknowledges it."""
        return self._raise(kind, tag, message, subject, latched=True)

    def _raise(
        self,
        kind: str,
        tag: str | None,
        message: str,
        subject: str | None,
        *,
        latched: bool,
        parent: int | None = None,
    ) -> dict[str, Any]:
        cls = alarm_class(kind)
        aid = self.store.add_alarm(
            self.plant,
            kind=kind,
            tag=tag,
            priority=cls.priority,
            message=message,
            response=cls.response,
            latched=latched,
            actor=ACTOR,
            subject=subject,
            parent_id=parent,
        )
        alarm = {
            "id": aid,
            "at": iso(now_utc()),
            "kind": kind,
            "tag": tag,
            "message": message,
            "priority": cls.priority,
        }
        if parent is None:
            self.recent.append(alarm)
            self.raised += 1
            log.error("ALARM %s (%s): %s", kind, cls.priority, message)
        else:
            log.info("alarm %s suppressed under %d: %s", kind, parent, message)
        return alarm

    def _clear(self, aid: int, why: str) -> None:
        self.store.clear_alarm(aid, actor=ACTOR, why=why)

    # ---- standing conditions -----------------------------------------------------------

    def condition(self, kind: str, active: dict[str | None, str]) -> None:
        """The set of tags for which a standing condition holds now, with the reason.

        A tag entering the set raises an alarm; one leaving it clears it. Tags that enter
        while the connection is down, or `flood_min` or more at once, go under one parent."""
        entering = {t: m for t, m in active.items() if (kind, t) not in self._active}
        leaving = [k for k in self._active if k[0] == kind and k[1] not in active]
        for key in leaving:
            aid, message = self._active.pop(key)
            self._clear(aid, f"cleared: {message}")
        self._close_empty_parents()
        parent = self._connection
        if parent is None and len(entering) >= self.flood_min:
            tags = ", ".join(str(t) for t in entering)
            message = f"{len(entering)} {kind} alarms at once ({tags}): likely one common cause"
            parent = self._raise(kind, None, message, None, latched=False)["id"]
            self._children[parent] = set()
        for tag, message in entering.items():
            alarm = self._raise(kind, tag, message, _subject(tag), latched=False, parent=parent)
            self._active[(kind, tag)] = (alarm["id"], message)
            if parent is not None:
                self._children.setdefault(parent, set()).add((kind, tag))

    def _close_empty_parents(self) -> None:
        """A flood parent clears when none of its conditions holds any more."""
        for parent, keys in list(self._children.items()):
            if parent != self._connection and not keys & set(self._active):
                del self._children[parent]
                self._clear(parent, "cleared: every alarm under it has cleared")

    # ---- the connection ----------------------------------------------------------------

    def on_batch(self, batch: Iterable[Sample]) -> None:
        """Watch a batch from the source: GAP markers open the connection alarm, a live sample
        closes it (the source marks every tag GAP when its connection drops)."""
        gaps = sorted({s.tag for s in batch if s.quality == Quality.GAP})
        live = any(s.quality != Quality.GAP for s in batch)
        if gaps and self._connection is None:
            self.connection_lost(f"no data from the plant: {len(gaps)} tag(s) cut off")
        elif live and self._connection is not None:
            self.connection_restored()

    def connection_lost(self, reason: str) -> None:
        """One parent alarm; conditions raised while it stands are grouped under it."""
        if self._connection is not None:
            return
        alarm = self._raise("connection_lost", None, reason, None, latched=False)
        self._connection = alarm["id"]
        self._children[alarm["id"]] = set()

    def connection_restored(self) -> None:
        """Clear the parent and its children; a condition that still holds is raised afresh
        on its next check, annunciated on its own."""
        parent, self._connection = self._connection, None
        if parent is None:
            return
        for key in self._children.pop(parent, set()):
            if key in self._active:
                aid, message = self._active.pop(key)
                self._clear(aid, f"cleared with the connection: {message}")
        self._clear(parent, "the plant's data is flowing again")

    def active(self) -> list[str]:
        return [message for _aid, message in self._active.values()]
