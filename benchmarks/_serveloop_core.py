"""The pieces of the served-loop benchmark: a cstr spec on free ports, one closed loop run over
OPC-UA (`twin sim` + `twin serve --mode auto` as real processes), the same loop in-process, and
the one tracking-cost definition both are scored with.

Over the served loop's first (warm-up) intervals the in-process plant replays the MVs the
served plant received, so when scoring starts both plants are in the same state (same scenario,
seed and plant clock); from then on the in-process planner decides every control interval with
the same twin, setpoints (the spec's) and operator limits, seeing only the samples the runtime
had. What is left to differ is what the protocols and the wall clock add: a move reaches the
served plant after planning (`speed` x its wall time, in plant time), and values cross OPC-UA.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.procs import (  # noqa: E402
    log_tail,
    start_logged,
    stop,
    twin_cmd,
    wait_for,
)
from tests.support.specs import ports, sim_cmd, spec_copy  # noqa: E402
from twin.paths import Home  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

log = logging.getLogger(__name__)

START = datetime(2026, 1, 1, tzinfo=UTC)
"""Plant-clock start of both loops: aligned to the control interval, as the runtime counts it."""


# ---- the one cost definition -------------------------------------------------------------


def tracking_cost(
    frame: pd.DataFrame, spec: PlantSpec, t0: datetime, t1: datetime
) -> dict[str, float]:
    """Integrated squared tracking error of the *measured* CVs against the spec's setpoints.

    frame: wide, DatetimeIndex UTC (plant clock), one column per tag. Scored samples are those
    with t0 < ts <= t1 (the plant's response to the decisions made from t0 on); each counts
    sample_period_s. Returns {"cost", "samples", "<cv>": per-CV cost}.
    """
    dt = spec.plant.sample_period_s
    window = frame[(frame.index > t0) & (frame.index <= t1)]
    out: dict[str, float] = {"cost": 0.0, "samples": float(len(window))}
    for cv, sp in spec.objective.setpoints.items():
        w = spec.objective.weights.get(cv, 1.0)
        if w == 0 or cv not in window:
            continue
        err = window[cv].to_numpy(dtype=float) - float(sp)
        part = w * float(np.nansum(err**2)) * dt
        out[cv] = part
        out["cost"] += part
        out["samples"] = float(np.isfinite(err).sum())
    return out


# ---- the spec on free ports --------------------------------------------------------------


def spec_on_free_ports(
    folder: Path, operating: dict[str, tuple[float, float]] | None = None
) -> PlantSpec:
    """The built-in cstr spec, unchanged but for its ports (and `operating` limits given per
    tag); its simulator by absolute path."""
    return load_spec(spec_copy("cstr", folder, operating=operating))


# ---- the loop over OPC-UA ------------------------------------------------------------------


@dataclass
class LoopRun:
    """One closed loop: measured data on the plant clock and the decisions taken."""

    frame: pd.DataFrame
    """Wide, DatetimeIndex UTC: measured values of every tag at each sample instant."""
    decisions: list[datetime]
    """Plant instants (data_ts) at which a decision was made, in order."""
    proposed: list[dict[str, float]] = field(default_factory=list)
    """The planner's MV values at each decision."""
    first_data: datetime | None = None
    """First sample the controller had (the runtime's first ingested sample)."""
    plan_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    """Proposal statuses (served loop): written, refused, expired, ..."""
    status_list: list[str] = field(default_factory=list)
    """The status of each decision, in order."""
    wall_s: float = 0.0


def run_served(
    models: Path,
    run_dir: Path,
    *,
    scenario: str,
    seed: int,
    speed: float,
    intervals: int,
    operating: dict[str, tuple[float, float]] | None = None,
) -> LoopRun:
    """`twin sim --speed X` and `twin serve --mode auto --steps intervals+1` as processes.

    The runtime is started first and the simulator once the runtime has loaded its twin, so the
    first control intervals of the scenario are not spent importing torch.
    """
    from twin.historian import Historian
    from twin.state import Store

    spec = spec_on_free_ports(run_dir / "spec", operating)
    home = Home.at(run_dir / "home")
    shutil.copytree(models, home.models_dir(spec.name))
    op, mb = ports(spec)
    serve_log, sim_log = run_dir / "serve.log", run_dir / "sim.log"
    began = time.monotonic()
    serve = start_logged(
        twin_cmd(
            "serve",
            str(spec.path),
            "--mode",
            "auto",
            "--source",
            "opcua",
            "--steps",
            str(intervals + 1),
            "--home",
            str(home.root),
        ),
        serve_log,
    )
    sim = None
    store = Store.open(home)
    try:

        def loaded() -> bool:
            status = store.get_status(spec.name)
            return status is not None and status.model_version is not None

        wait_for(loaded, 120, "the runtime to load its twin", serve, serve_log)
        sim = start_logged(
            sim_cmd(
                spec,
                speed,
                "--scenario",
                scenario,
                "--seed",
                str(seed),
                "--start",
                START.isoformat(),
                "--home",
                str(home.root),
            ),
            sim_log,
        )
        budget = 120 + 3 * (intervals + 2) * spec.plant.control_interval_s / speed
        wait_for(
            lambda: serve.poll() is not None or None, budget, "`twin serve` to finish", sim, sim_log
        )
        if serve.returncode != 0:
            raise RuntimeError(f"`twin serve` failed ({serve.returncode}):\n{log_tail(serve_log)}")
        records = sorted(store.list_proposals(spec.name, limit=10_000), key=lambda p: p.data_ts)
    finally:
        stop(serve)
        if sim is not None:
            stop(sim)
        store.close()
    with Historian(home.historian_dir(spec.name)) as h:
        first, last = h.time_range()
        frame = h.read(first, last + timedelta(seconds=1))
    statuses: dict[str, int] = {}
    for p in records:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    return LoopRun(
        frame=frame,
        decisions=[p.data_ts for p in records],
        proposed=[dict(p.mv_values) for p in records],
        first_data=first,
        plan_ms=[float(p.payload.get("plan_ms", math.nan)) for p in records],
        statuses=statuses,
        status_list=[p.status for p in records],
        wall_s=time.monotonic() - began,
    )


# ---- the same loop in-process ------------------------------------------------------------


def run_inprocess(
    spec: PlantSpec,
    twin,  # type: ignore[no-untyped-def]
    *,
    scenario: str,
    seed: int,
    decisions: list[datetime],
    first_data: datetime | None,
    end: datetime,
    replay: pd.DataFrame | None = None,
    own_from: datetime | None = None,
) -> LoopRun:
    """The Simulation of the same scenario and seed, the same planner deciding at `decisions`.

    Before `own_from` the plant is driven with the MV values of `replay` (the served loop's
    measured frame), so both loops stand in the same plant state when scoring starts; the
    planner still decides at those instants (its warm start and disturbance estimate build up
    as the runtime's did) but its moves are not applied. Samples before `first_data` are hidden
    from the planner (NaN: the runtime never had them). From `own_from` on each decision is
    applied at its own instant: the plant clock stands still while an in-process planner thinks.
    """
    from plants.base import Simulation
    from twin.plan.controller import PlanningController
    from twin.plan.proposal import Proposal
    from twin.plan.settings import PlannerConfig

    sim = Simulation(spec, seed=seed, scenario=scenario, start=START)
    # As `twin serve --mode auto` plans: operating limits are hard constraints in auto mode.
    controller = PlanningController(twin, spec, PlannerConfig(hard_operating=True))
    names = controller.tag_names
    mvs = [t.name for t in spec.mvs]
    operating = {t.name: t.operating_limits for t in spec.tags}
    # The simulator server publishes its first instant noise-free (true outputs, MVs as set).
    times, rows = [sim.time], [{**sim.true_outputs(), **sim.mv}]
    held = None
    if replay is not None and own_from is not None:
        # OPC-UA reports by exception: an MV appears only when it changes; it holds in between.
        held = replay[mvs].reindex(replay.index.union([START])).sort_index()
        held.loc[START] = [sim.mv[n] for n in mvs]
        held = held.ffill()
    due = sorted(decisions)
    run = LoopRun(frame=pd.DataFrame(), decisions=[], first_data=first_data)
    while sim.time < end:
        own = held is None or own_from is None or sim.time >= own_from
        while due and due[0] <= sim.time:
            at = due.pop(0)
            if at < sim.time:
                continue  # an instant between samples the runtime saw: nothing to decide on
            window = np.full((twin.window, len(names)), math.nan)  # NaN: never seen
            recent = list(zip(times, rows, strict=True))[-twin.window :]
            for i, (t, r) in enumerate(recent, start=twin.window - len(recent)):
                if first_data is None or t >= first_data:
                    window[i] = [r.get(n, math.nan) for n in names]
            out = controller.decide(window, sim.time, operating=operating)
            if not own:
                continue
            run.decisions.append(sim.time)
            if isinstance(out, Proposal):
                run.proposed.append(dict(out.proposed))
                run.plan_ms.append(out.plan_ms)
                applied = sim.set_mvs(dict(out.proposed))
                # Stamped like the simulator server stamps a write: at the last sample instant.
                rows[-1] = {**rows[-1], **applied}
                run.statuses["written"] = run.statuses.get("written", 0) + 1
            else:
                run.statuses[out.code] = run.statuses.get(out.code, 0) + 1
        if not own:
            # A write lands between two steps and the server stamps it with the last sample
            # instant: the MV the served plant held over the next step is the newest value
            # stamped at or before now.
            at = held.index[held.index <= sim.time][-1]
            sim.set_mvs({n: float(held.loc[at, n]) for n in mvs})
        values = sim.step()
        rows.append({**values, **sim.mv})  # MVs as applied, as the simulator serves them
        times.append(sim.time)
    run.frame = pd.DataFrame(rows, index=pd.DatetimeIndex(times, name="timestamp"))
    return run


def move_delays_s(run: LoopRun, mv: str, tol: float = 1e-3) -> list[float]:
    """Plant seconds from each decision to the sample instant its MV value is stamped at.

    A write is stamped with the plant's last sample instant and acts over the steps after it:
    0 s means the move acted from the decision instant on, as in-process; 5 s one sample late.

    tol is absolute (engineering units): MVs cross OPC-UA as float32 (~3e-5 K at 300 K).
    """
    out = []
    series = run.frame[mv].dropna()
    for at, proposed in zip(run.decisions, run.proposed, strict=False):
        want = proposed.get(mv)
        before = series[series.index < at]
        if want is None or not len(before) or abs(before.iloc[-1] - want) <= tol:
            continue  # no move: nothing to time
        after = series[series.index >= at]
        hit = after[np.isclose(after.to_numpy(), want, rtol=0, atol=tol)]
        if len(hit):
            out.append((hit.index[0] - at).total_seconds())
    return out
