"""The write path: a guarded move, written as one unit, read back, and reconciled.

A move (the MV values of one approval or one step-test step) is committed as intents before any
I/O. Each MV is written and read back; the first failure stops the move. When any write failed
or its outcome is unknown (a connection cut between write and read-back), the move is settled
from the plant's own fresh samples (twin.serve.settling), never by re-sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from connectors.base import WriteResult
from connectors.errors import ReadBackMismatch, WriteRejected
from twin.errors import BadInput
from twin.guard import GuardDecision, check_write
from twin.serve.alarms import Alarms
from twin.serve.clock import interval_of
from twin.serve.config import ACTOR
from twin.serve.live import LiveState
from twin.serve.settling import Move, Settling
from twin.spec import PlantSpec
from twin.state import Store

log = logging.getLogger(__name__)


class Sink(Protocol):
    """What the write path needs of a connector's sink (connectors.opcua / connectors.modbus)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> Any: ...

    async def write(self, values: Mapping[str, float]) -> list[WriteResult]: ...


class WritePath:
    def __init__(
        self,
        spec: PlantSpec,
        store: Store,
        sink: Sink,
        live: LiveState,
        alarms: Alarms,
        *,
        rel_tol: float = 1e-5,
    ) -> None:
        self.spec, self.store, self.live, self.alarms = spec, store, live, alarms
        self._sink_obj = sink
        self._sink: Sink | None = None
        self._lock = asyncio.Lock()
        self.rel_tol = rel_tol
        self.settling = Settling(self)
        self.writes = 0
        self._moved_interval: int | None = None
        self._restart_checked = False
        self._written: dict[str, tuple[float, datetime]] = {}
        """Each MV's last value written and read back, with the plant time it was written."""
        self._quarantine: dict[str, datetime | None] = {}
        """MVs whose last write's outcome was unknown -> plant time a fresh connection to the
        plant was made after it (None: not yet)."""

    # ---- the sink ----------------------------------------------------------------------

    async def _open_sink(self) -> Sink:
        if self._sink is None:
            await self._sink_obj.__aenter__()
            self._sink = self._sink_obj
            reopened = self.live.clock.now()
            for tag, since in self._quarantine.items():
                if since is None:
                    self._quarantine[tag] = reopened
        return self._sink

    def quarantined(self, tags: Iterable[str], now: datetime) -> bool:
        """A write of one of `tags` had an unknown outcome and may still land (a stalled
        connection can deliver it late): no new move of it until a fresh connection to the
        plant has been made and a control interval of plant time has passed since, so a late
        landing happens from the value it was approved against, not on top of a newer move."""
        interval = self.spec.plant.control_interval_s
        for tag in tags:
            if tag not in self._quarantine:
                continue
            since = self._quarantine[tag]
            if since is None and self._sink is not None:  # reconnected before the clock ran
                self._quarantine[tag] = since = now
            if since is None or (now - since).total_seconds() < interval:
                return True
            del self._quarantine[tag]
        return False

    async def probe(self) -> None:
        """Try to reopen the plant connection (ends a quarantine's wait for one)."""
        if self._sink is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._open_sink(), timeout=10.0)

    async def close(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sink.__aexit__(None, None, None), timeout=5.0)

    # ---- one move ----------------------------------------------------------------------

    def unseen_writes(self) -> dict[str, float]:
        """Values written whose effect no live sample shows yet (a sample newer than the write
        ends that): the guard measures max_move from them as well as from the samples."""
        out = {}
        for tag, (value, at) in list(self._written.items()):
            sample = self.live.latest.get(tag)
            if sample is not None and sample.ts > at:
                del self._written[tag]
            else:
                out[tag] = value
        return out

    def check_own_move(self, values: Mapping[str, float], now: datetime) -> GuardDecision:
        """The guard for a move the runtime makes itself (a step-test step, a repair): no
        proposal to match and no expiry, every other check as for an approval."""
        return check_write(
            self.spec,
            approved=values,
            proposed=values,
            live=self.live.latest,
            now=now,
            expires_at=None,
            operator_limits=self.store.operator_limits(self.spec.name),
            written=self.unseen_writes(),
        )

    def interval_of(self, ts: datetime) -> int:
        """The control interval of plant time `ts` falls in (intervals on the epoch grid)."""
        return interval_of(ts, self.spec.plant.control_interval_s)

    def moved_in_interval(self, now: datetime) -> bool:
        """A move (approved, repair or step-test step) was already started in the control
        interval of `now`: the live samples the next guard check measures max_move from may
        not show it yet."""
        return self._moved_interval is not None and self._moved_interval == self.interval_of(now)

    def start(
        self,
        values: Mapping[str, float],
        now: datetime,
        *,
        decision_id: int | None = None,
        proposal_id: int | None = None,
        campaign: tuple[int, int] | None = None,
    ) -> Move:
        """Commit the intent (and take the approval) before any I/O."""
        prior = {t: v for t in values if (v := self.live.value(t)) is not None}
        ids = self.store.record_intent(
            plant=self.spec.name,
            actor=ACTOR,
            values=values,
            prior=prior,
            decision_id=decision_id,
            proposal_id=proposal_id,
            campaign=campaign,
        )
        self._moved_interval = self.interval_of(now)  # repairs and step-test steps count too
        return Move(ids, dict(values), prior, now, decision_id, proposal_id, campaign)

    async def write(self, move: Move) -> str:
        """Write every MV of the move; "written", "failed" (certainly not applied, nothing of
        it) or "unsettled" (to be settled from the plant's samples).

        A stop that arrives mid-move does not cut it short: the move is finished and recorded
        first (bounded), so no intent is left open with the plant already moved."""
        inner = asyncio.ensure_future(self._write_move(move))
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(inner), timeout=8.0)
            raise

    async def _write_move(self, move: Move) -> str:
        async with self._lock:
            failed_at: str | None = None
            for tag, value in move.requested.items():
                wid = move.ids[tag]
                if failed_at is not None:
                    self.store.complete_write(wid, "failed", reason=f"not sent: {failed_at} failed")
                    continue
                try:
                    sink = await self._open_sink()
                except Exception as exc:  # nothing was sent: a certain failure
                    failed_at = tag
                    self.store.complete_write(
                        wid, "failed", reason=f"cannot reach the plant: {exc}"
                    )
                    self.alarms.raise_("write_failed", tag, f"{tag}: {exc}", move.subject)
                    continue
                failed_at = await self._write_one(sink, move, tag, value)
            done = not move.unsettled and failed_at is None
            if done:
                return "written"
            if not move.unsettled and failed_at == next(iter(move.requested)):
                return "failed"  # the first MV failed for certain: nothing of the move applied
            for tag in move.requested:
                move.unsettled.add(tag)  # settle every MV of the move from the plant's samples
            # Only samples stamped after the attempts ended say what the plant holds: one stamped
            # after the move started may predate the write's landing (the clock trails the
            # plant by a sample's delivery), and settled a landed write as "not applied".
            ended = self.live.clock.now()
            if ended is not None and ended > move.since:
                move.since = ended
            self.settling.unsettled.append(move)
            return "unsettled"

    async def _write_one(self, sink: Sink, move: Move, tag: str, value: float) -> str | None:
        wid = move.ids[tag]
        try:
            (res,) = await sink.write({tag: value})
        except ReadBackMismatch as exc:
            r = exc.result
            self.store.complete_write(
                wid, "mismatch", written=r.written, read_back=r.read_back, reason=str(exc)
            )
            self.alarms.raise_("readback_mismatch", tag, str(exc), move.subject)
            return tag
        except (WriteRejected, BadInput) as exc:  # refused before or by the device: not applied
            self.store.complete_write(wid, "failed", reason=str(exc))
            self.alarms.raise_("write_failed", tag, f"{tag}: {exc}", move.subject)
            return tag
        except Exception as exc:  # a cut connection, a timeout, a garbled read-back: unknown
            await self.close()  # reopen on the next write
            why = f"outcome unknown: {type(exc).__name__}: {exc}"
            self.store.complete_write(wid, "uncertain", reason=why)
            self.alarms.raise_("write_uncertain", tag, f"{tag}: {why}", move.subject)
            move.unsettled.add(tag)
            self._quarantine[tag] = None
            return tag
        self.store.complete_write(wid, "done", written=res.written, read_back=res.read_back)
        written_at = self.live.clock.now()
        if written_at is not None and math.isfinite(res.read_back):
            self._written[tag] = (res.read_back, written_at)
        self.writes += 1
        self.store.log_event(
            user=ACTOR,
            kind="write",
            plant=self.spec.name,
            subject=move.subject,
            what={
                "tag": tag,
                "requested": res.requested,
                "written": res.written,
                "read_back": res.read_back,
                "write_id": wid,
            },
        )
        return None

    # ---- settling (twin.serve.settling) ----------------------------------------------

    def load_interrupted(self) -> None:
        """After a restart: every move with an intent left open becomes unsettled."""
        self.settling.load_interrupted()

    async def settle(self, now: datetime | None) -> None:
        """Settle every unsettled move whose MVs have all reported since it started."""
        await self.settling.settle(now)

    @property
    def unsettled(self) -> list[Move]:
        return self.settling.unsettled
