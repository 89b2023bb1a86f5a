"""The fault cases of issue 17, each run against a real plant server and a real `twin serve`.

A case runs the loop healthy until the runtime has written a complete move (so that "no unsafe
write" is never vacuous), injects its fault, holds it, clears it, waits for writes to resume,
stops the runtime and judges the plant's MV log and the store (verdict.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from tests.support.procs import free_port, stop

from . import mixer, store_view
from .fault_plant import FaultPlant, MvWrite, PlantThread
from .procs import install_models, start_serve
from .proxy import Proxy
from .verdict import ANY, Block, CaseResult, partial_moves, samples_lost, unsafe_writes

SPEED = 10.0
"""Plant seconds per wall second."""
DELIVERY_WALL_S = 0.4
"""Wall time a loaded two-core machine may add between a sample leaving the server and the
runtime's guard seeing it (event-loop turns behind a plan, a write under way)."""
GRACE_S = mixer.SAMPLE_PERIOD_S + SPEED * (mixer.PUBLISHING_INTERVAL_MS / 1000 + DELIVERY_WALL_S)
"""Plant time a fault may take to reach the runtime's guard: the sample that shows it, one
publishing interval and the delivery allowance, in plant time at the suite's speed (5.5 s, about
one control interval). A guard that missed the fault would write in every control interval of
the rest of the hold."""
HOLD_S = 40.0
"""Plant seconds a fault is held: several control intervals and more than max_staleness_s."""


@dataclass
class Ctx:
    """One case's running parts."""

    tmp: Path
    plant: FaultPlant
    thread: PlantThread
    spec_path: Path
    home: Path
    proxy: Proxy | None = None
    serves: list[subprocess.Popen[bytes]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    fired: list[MvWrite] = field(default_factory=list)

    def serve(self) -> subprocess.Popen[bytes]:
        from twin.spec import load_spec

        p = start_serve(load_spec(self.spec_path), self.home, self.tmp / "serve.log")
        self.serves.append(p)
        return p

    def wait_plant(self, seconds: float) -> None:
        time.sleep(seconds / SPEED)

    def arm(self, action: Callable[[MvWrite], bool]) -> None:
        """Run `action` once, at the first write of the next move (between it and the rest)."""
        first = _first_tag_of_move(self.plant.writes)

        def hook(w: MvWrite) -> bool:
            if w.tag != first or self.fired:
                return False
            self.fired.append(w)
            return action(w)

        self.plant.on_write = hook


def _first_tag_of_move(writes: list[MvWrite]) -> str:
    return writes[-len(mixer.MVS)].tag


@dataclass(frozen=True)
class Case:
    name: str
    inject: Callable[[Ctx], None]
    clear: Callable[[Ctx], None] = lambda ctx: ctx.plant.faults.clear()
    alarms: tuple[str, ...] = ()
    """Tags an alarm must name (ANY: any alarm), empty when the case should not alarm."""
    must_keep_writing: bool = False
    report_by_exception: bool = False
    proxy: bool = False
    staleness_block: bool = False
    """The fault blocks once the tag's own last sample is older than max_staleness_s."""
    blocks: bool = True
    """Writes are unsafe while the fault is on (from its start plus GRACE_S)."""
    fault_tags: tuple[str, ...] = ()
    loses_samples: bool = False
    """Samples sent that no one can receive are lost: the runtime is dead while the server
    still holds its subscription, or the server dies with notifications queued. The server
    keeps no history to read back."""


# ---- injections -----------------------------------------------------------------------------


def _override(**values: float) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.plant.faults.override.update(values)


def _silent(tag: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.plant.faults.silent.add(tag)


def _bad(tag: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.plant.faults.bad.add(tag)


def _behind(tag: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.plant.faults.ts_offset.update({tag: timedelta(hours=-1)})


def _no_source_ts(tag: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.plant.faults.no_source_ts.add(tag)


def _clock_jump(ctx: Ctx) -> None:
    ctx.plant.faults.clock_offset = timedelta(hours=1)


def _keep_clock(ctx: Ctx) -> None:
    """A jumped clock stays jumped: undoing it would be a second jump, backwards."""
    offset = ctx.plant.faults.clock_offset
    ctx.plant.faults.clear()
    ctx.plant.faults.clock_offset = offset


def _nothing(ctx: Ctx) -> None:
    """Report by exception is the plant's nature here: held MVs send nothing from the start."""


def _kill_server(ctx: Ctx) -> None:
    """The plant's server process dies mid-move and comes back 3 s later, plant state kept. The
    runtime reaches it through the proxy, so that, as with a real killed process, every
    connection ends and new ones are refused at the same moment: asyncua's own stop closes the
    connections first and its listener last, and a reconnect landing in between got a session on
    the dying server that answered but never published again (a CI failure, twice)."""
    proxy = ctx.proxy
    assert proxy is not None

    async def restart() -> None:
        await ctx.plant.start_server()  # back on the same port once the old one let go
        await proxy.start()

    def action(w: MvWrite) -> bool:
        proxy.kill()
        ctx.thread.later(restart, 3.0)
        return True  # the server stops before the rest of the request

    ctx.arm(action)


def _cut(ctx: Ctx) -> None:
    assert ctx.proxy is not None
    ctx.arm(lambda w: ctx.proxy.drop() or False)  # type: ignore[union-attr]


def _stall(ctx: Ctx) -> None:
    proxy = ctx.proxy
    assert proxy is not None

    def action(w: MvWrite) -> bool:
        proxy.stall()
        ctx.thread.later(proxy.resume, 8.0)
        return False

    ctx.arm(action)


def _sigkill(ctx: Ctx) -> None:
    pid = ctx.serves[-1].pid

    def action(w: MvWrite) -> bool:
        os.kill(pid, signal.SIGKILL)  # after the first MV of the move landed, before the rest
        return False

    ctx.arm(action)


def _restart_after_kill(ctx: Ctx) -> None:
    ctx.plant.faults.clear()
    if ctx.serves and ctx.serves[-1].poll() is not None:
        ctx.serve()


def _second_runtime(ctx: Ctx) -> None:
    ctx.serve()


def _stop_second(ctx: Ctx) -> None:
    if len(ctx.serves) > 1:
        stop(ctx.serves[-1])


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("cv_out_of_range", _override(temp=150.0), alarms=("temp",), fault_tags=("temp",)),
        Case(
            "cv_frozen",
            _silent("level"),
            alarms=("level",),
            staleness_block=True,
            fault_tags=("level",),
        ),
        Case(
            "mv_frozen_rbe",
            _nothing,
            report_by_exception=True,
            must_keep_writing=True,
            blocks=False,
        ),
        Case(
            "nan_inf",
            _override(temp=float("nan"), level=float("inf")),
            alarms=("temp", "level"),
            fault_tags=("temp", "level"),
        ),
        Case("bad_quality", _bad("level"), alarms=("level",), fault_tags=("level",)),
        Case(
            "server_killed_mid_move",
            _kill_server,
            proxy=True,
            alarms=(ANY,),
            blocks=False,
            loses_samples=True,
        ),
        Case("cut_between_write_and_readback", _cut, proxy=True, alarms=(ANY,), blocks=False),
        Case("stall_between_write_and_readback", _stall, proxy=True, alarms=(ANY,), blocks=False),
        Case(
            "runtime_sigkill_mid_move",
            _sigkill,
            clear=_restart_after_kill,
            blocks=False,
            loses_samples=True,
        ),
        Case("clock_jump", _clock_jump, clear=_keep_clock, alarms=(ANY,), blocks=False),
        Case("tag_clock_hour_behind", _behind("temp"), alarms=("temp",), fault_tags=("temp",)),
        Case(
            "no_source_timestamp",
            _no_source_ts("temp"),
            alarms=("temp",),
            staleness_block=True,
            fault_tags=("temp",),
        ),
        Case("second_runtime", _second_runtime, clear=_stop_second, blocks=False),
    )
}


# ---- running one case -----------------------------------------------------------------------


def run_case(case: Case, tmp: Path, models: Path) -> CaseResult:
    """Run one case in `tmp` with the trained twin in `models`; always stops what it started."""
    plant_port = free_port()
    runtime_port = free_port() if case.proxy else plant_port
    spec = mixer.write_plant(
        tmp / "plant",
        f"opc.tcp://127.0.0.1:{runtime_port}/twin/",
        report_by_exception=case.report_by_exception,
    )
    home = tmp / "home"
    install_models(models, home, mixer.NAME)
    plant = FaultPlant(spec, plant_port, speed=SPEED, report_by_exception=case.report_by_exception)
    result = CaseResult(case.name, alarms_expected=list(case.alarms))
    result.must_keep_writing = case.must_keep_writing
    result.may_lose_samples = case.loses_samples
    with PlantThread(plant) as thread:
        ctx = Ctx(tmp, plant, thread, spec.path, home)  # type: ignore[arg-type]
        try:
            if case.proxy:
                ctx.proxy = Proxy(runtime_port, plant_port)
                thread.call(ctx.proxy.start())
            _exercise(case, ctx, result)
        finally:
            for p in reversed(ctx.serves):
                stop(p)
            if ctx.proxy is not None:
                thread.call(ctx.proxy.close())
    _judge(case, ctx, result)
    return result


def _exercise(case: Case, ctx: Ctx, result: CaseResult) -> None:
    plant = ctx.plant
    ctx.serve()
    _wait_moves(ctx, 1, after=None, timeout=150, what="a first complete move before the fault")
    result.writes_before_fault = len(plant.writes)
    start = plant.time
    case.inject(ctx)
    ctx.wait_plant(HOLD_S)
    if plant.on_write is not None:  # a mid-move case: wait (wall time) for its moment to come
        deadline = time.monotonic() + 60
        while not ctx.fired and time.monotonic() < deadline:
            time.sleep(0.1)
        if not ctx.fired:
            result.notes.append("the armed mid-move fault never fired (no move after arming)")
        ctx.wait_plant(HOLD_S)
    end = plant.time
    result.writes_during_fault = sum(1 for w in plant.writes if start < w.plant_ts <= end)
    case.clear(ctx)
    if case.blocks:
        lag = mixer.MAX_STALENESS_S if case.staleness_block else 0.0
        what = f"{', '.join(case.fault_tags)} faulty ({case.name})"
        ctx.blocks.append(Block(start + timedelta(seconds=lag + GRACE_S), end, what))
    result.resumed = _wait_moves(ctx, 1, after=plant.time, timeout=60, what="", required=False)
    result.notes.append(f"fault from {start:%H:%M:%S} to {end:%H:%M:%S} plant time")
    result.notes += [f"the plant's own call failed: {e}" for e in plant.errors]
    if not result.resumed:
        result.notes.append(f"the runtime's last log lines:\n{_tail(ctx)}")


def _wait_moves(
    ctx: Ctx, n: int, *, after: datetime | None, timeout: float, what: str, required: bool = True
) -> bool:
    """Wait until n complete moves (every MV written) landed after plant time `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writes = [w for w in ctx.plant.writes if after is None or w.plant_ts > after]
        if min((sum(1 for w in writes if w.tag == mv) for mv in mixer.MVS), default=0) >= n:
            return True
        if required and all(p.poll() is not None for p in ctx.serves):
            raise AssertionError(f"twin serve exited waiting for {what}:\n{_tail(ctx)}")
        time.sleep(0.1)
    if required:
        raise AssertionError(
            f"timed out waiting for {what}; the case proves nothing:\n{_tail(ctx)}"
        )
    return False


def _tail(ctx: Ctx) -> str:
    log = ctx.tmp / "serve.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-25:]) if log.exists() else ""


def _judge(case: Case, ctx: Ctx, result: CaseResult) -> None:
    rec = store_view.read(ctx.home, mixer.NAME)
    result.writes_total = len(ctx.plant.writes)
    result.unsafe = unsafe_writes(ctx.plant, ctx.blocks, rec)
    result.unsafe_writes = len(result.unsafe)
    result.partial = partial_moves(ctx.plant, rec)
    result.partial_unreconciled = len(result.partial)
    result.alarms_raised = len(rec.alarms)
    for tag in case.alarms:
        named = rec.alarms if tag == ANY else [a for a in rec.alarms if store_view.names(a, tag)]
        if not named:
            result.alarms_missing.append(tag)
    if case.must_keep_writing:
        result.false_alarms = [
            str(a.get("what")) for a in rec.alarms if store_view.mentions_any(a, list(mixer.MVS))
        ]
    result.samples_published, result.samples_lost = samples_lost(ctx.plant, ctx.home)
