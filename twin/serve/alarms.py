"""Alarms the runtime raises: logged, in the audit log, and on the status row the control
room shows. A condition that persists (a frozen sensor) is one alarm until it clears, not one
per control interval."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from twin.serve.config import ACTOR
from twin.state import Store, iso, now_utc

log = logging.getLogger(__name__)


class Alarms:
    def __init__(self, store: Store, plant: str, keep: int = 20) -> None:
        self.store, self.plant = store, plant
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.raised = 0
        self._active: dict[tuple[str, str | None], str] = {}

    def raise_(
        self, kind: str, tag: str | None, message: str, subject: str | None = None
    ) -> dict[str, Any]:
        """Raise an alarm now (every call is a new alarm: a failed write, a partial move)."""
        alarm = {"at": iso(now_utc()), "kind": kind, "tag": tag, "message": message}
        self.recent.append(alarm)
        self.raised += 1
        log.error("ALARM %s: %s", kind, message)
        self.store.log_event(
            user=ACTOR, kind="alarm", plant=self.plant, subject=subject, what=alarm, why=message
        )
        return alarm

    def condition(self, kind: str, active: dict[str | None, str]) -> None:
        """The set of tags for which a standing condition holds now, with the reason.

        A tag entering the set raises an alarm; one leaving it is recorded as cleared."""
        for tag, message in active.items():
            if (kind, tag) not in self._active:
                self._active[(kind, tag)] = message
                self.raise_(kind, tag, message, subject=f"tag:{tag}" if tag else None)
        for key in [k for k in self._active if k[0] == kind and k[1] not in active]:
            message = self._active.pop(key)
            self.store.log_event(
                user=ACTOR,
                kind="alarm_clear",
                plant=self.plant,
                subject=f"tag:{key[1]}" if key[1] else None,
                what={"kind": kind, "tag": key[1]},
                why=f"cleared: {message}",
            )

    def active(self) -> list[str]:
        return list(self._active.values())
