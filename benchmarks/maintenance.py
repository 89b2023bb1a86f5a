"""Model maintenance end to end: drift -> alarm -> retrain on live history -> shadow -> gated
promotion, on each built-in plant, through `twin serve` against `twin sim` (real processes,
real OPC-UA, real historian and state store on disk).

Per plant and seed:
  1. v1 is trained on generated PRBS history of the clean plant (twin.train_presets configs).
  2. Drift run: `twin sim --speed 50 --scenario <growing drift>` (clean for 30 plant minutes, then
     the drift grows for 2 h and stays) with `twin serve --mode auto`; the cost right after
     deployment is the tracking cost over plant minutes [10, 30]; the same-length rolling cost
     then shows when it has doubled; the drift alarm's plant time comes from its event.
  3. While v1 keeps controlling, `twin retrain PLANT --since <the event's onset>` trains v2 on
     the live history the runtime recorded (closed-loop data included).
     With --step-test, when that window barely moved an MV, the step test the retrain designs
     is requested and approved (two scripted engineers), the serving runtime runs it, and
     v2 is retrained over it.
  4. `twin serve --mode supervised --shadow v2` (nothing approved: the plant holds; with
     --shadow-mode auto the active twin keeps controlling, as on a plant) scores both
     twins on the live window; `twin models promote --gated` promotes v2 only if it beats v1.
  5. `twin serve --mode auto` with the active twin: cost over the same-length window.
  6. Quiet run: the same length as the drift run without drift (no scenario), v1: drift alarms,
     and its cost judged as the drift run's (a cost at the noise floor doubles without drift).
Cost: benchmarks/_serveloop_core.tracking_cost (the spec's setpoints and weights), per sample.

    python benchmarks/maintenance.py [--plants cstr,four_tank] [--seeds 0] [--speed 50]
Prints a table and writes benchmarks/results/maintenance.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine_info  # noqa: E402
from _serveloop_core import tracking_cost  # noqa: E402

from tests.support import procs  # noqa: E402
from tests.support.specs import sim_cmd, spec_copy  # noqa: E402
from twin.paths import Home  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
DRIFT = {"cstr": "fouling_growth", "four_tank": "pump_wear_growth"}
DRIFT_RUN_MIN = {"cstr": 210.0, "four_tank": 150.0}
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Setup:
    """Lengths in plant minutes, speeds, training budget and the promotion gate."""

    speed: float = 50.0
    warmup_min: float = 10.0
    baseline_min: float = 20.0
    """The cost right after deployment: plant minutes [warmup, warmup + baseline]."""
    drift_run_min: float | None = None
    """Plant minutes of the drift run (None: the plant's DRIFT_RUN_MIN). The drift grows from
    30 to 150; retraining widens its window to what the configs need (cstr: about 3 h)."""
    hours: float = 4.0
    """Generated history v1 is trained on."""
    train_seconds: float = 60.0
    quick: bool = False
    shadow_steps: int = 24
    shadow_mode: str = "supervised"
    """`twin serve --mode` while the candidate runs in shadow: supervised (nothing is approved,
    so the plant holds its MVs) or auto (the active twin and its fallback keep controlling, as
    on a plant)."""
    margin: float = 0.1
    min_intervals: int = 10
    staleness_s: float = 120.0
    proposal_ttl_s: float = 60.0
    """Plant seconds a proposal may wait for its write: at 50x on a loaded 2-core machine the
    default (one interval: 0.2 s of wall time on the four_tank) let every proposal expire."""
    quiet: bool = True
    """Also run the equal stretch without drift."""
    after: bool = True
    """Run the active twin again after the promotion step and measure its cost."""
    scenario: str | None = None
    """Drift scenario (default: the plant's growing drift, DRIFT)."""
    after_alarm_min: float | None = None
    """End the drift run this many plant minutes after the alarm (None: at drift_run_min)."""
    fallback: str = "hold"
    """The spec's `[safety] fallback`: what acts while the twin abstains (hold, linear_mpc)."""
    step_test: bool = False
    """When the retrain reports MVs its window barely moved, run the step test it designs
    (requested and approved by scripted engineers, run by the serving runtime) and retrain
    over it: the candidate is that second version."""


class _Done(Exception):
    """The chain stops early (no after-promotion run)."""


def spec_on_free_ports(
    plant: str,
    folder: Path,
    staleness_s: float,
    ttl_s: float | None = None,
    fallback: str = "hold",
) -> PlantSpec:
    """The built-in plant's spec on free ports, its simulator by path, a wider staleness
    (plant seconds: at 50x the default 30 s is 0.6 s of wall time on a shared machine),
    proposal lifetime and the fallback that acts while the twin abstains."""
    safety: dict[str, float | str] = {"max_staleness_s": staleness_s, "fallback": fallback}
    if ttl_s is not None:
        safety["proposal_ttl_s"] = ttl_s
    return load_spec(spec_copy(plant, folder, safety=safety))


def run_cli(*args: str, log: Path) -> str:
    """A `twin` command to completion; its stdout (stderr goes to the log)."""
    with log.open("ab") as err:
        out = subprocess.run(
            procs.twin_cmd(*args),
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, **ENV},
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(
            f"twin {' '.join(args)} failed ({out.returncode}):\n{procs.log_tail(log)}"
        )
    return out.stdout.decode()


def train_v1(spec: PlantSpec, home: Home, setup: Setup, seed: int) -> str:
    """The deployed twin: `twin train`'s configs on generated history of the clean plant."""
    from twin.generate import generate
    from twin.train import train_plant
    from twin.train_presets import train_configs

    long = generate(
        spec,
        setup.hours,
        "prbs",
        seed=100 + seed,
        progress=False,
        start=START - timedelta(hours=setup.hours + 1),
    )
    frame = long.pivot_table(index="ts", columns="tag", values="value", aggfunc="last")
    model, data, cfg = train_configs(
        device="cpu", seed=seed, quick=setup.quick, max_seconds=setup.train_seconds
    )
    cfg = replace(cfg, progress=False)
    return train_plant(home, spec, model, data, cfg, frame=frame)


class Plant:
    """One `twin sim` for the whole chain (the drift keeps its plant clock across phases)."""

    def __init__(self, spec: PlantSpec, run: Path, scenario: str | None, seed: int, speed: float):
        self.spec, self.run, self.speed = spec, run, speed
        extra = ["--seed", str(seed), "--start", START.isoformat()]
        if scenario:
            extra += ["--scenario", scenario]
        self.log = run / "sim.log"
        self.cmd = sim_cmd(spec, speed, *extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = procs.start_logged(self.cmd, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)


def serve(
    spec: PlantSpec, home: Home, log: Path, mode: str, *extra: str
) -> subprocess.Popen[bytes]:
    os.environ.update(ENV)
    return procs.start_logged(
        procs.twin_cmd("serve", str(spec.path), "--mode", mode, "--home", str(home.root), *extra),
        log,
    )


def plant_time(home: Home, spec: PlantSpec) -> datetime | None:
    """The runtime's newest sample time. A sample stamped with the wall clock (seen from the
    four_tank simulator on a reconnect under heavy load) is not the plant's time: ignored."""
    from twin.state import Store

    with Store.open(home) as store:
        s = store.get_status(spec.name)
    t = None if s is None else s.last_sample_ts
    return None if t is None or t > START + timedelta(days=2) else t


def wait_plant(
    home: Home,
    spec: PlantSpec,
    until: datetime,
    proc: subprocess.Popen[bytes],
    log: Path,
    wall_limit: float,
    after_alarm_min: float | None = None,
) -> None:
    """Until the plant clock reaches `until` (or `after_alarm_min` past a drift alarm)."""
    deadline = time.monotonic() + wall_limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"twin serve exited ({proc.returncode}):\n{procs.log_tail(log)}")
        t = plant_time(home, spec)
        if t is not None and t >= until:
            return
        if t is not None and after_alarm_min is not None:
            events, _ = drift_events(home, spec)
            fired = [datetime.fromisoformat(e["what"]["data_ts"]) for e in events]
            if fired and t >= fired[0] + timedelta(minutes=after_alarm_min):
                return
        time.sleep(0.5)
    raise RuntimeError(
        f"plant clock did not reach {until} in {wall_limit:.0f} s\n{procs.log_tail(log)}"
    )


def wait_new_data(
    home: Home, spec: PlantSpec, before: datetime, proc: subprocess.Popen[bytes], log: Path
) -> datetime:
    """The plant time of the first sample a (re)started runtime ingested after `before`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"twin serve exited ({proc.returncode}):\n{procs.log_tail(log)}")
        t = plant_time(home, spec)
        if t is not None and t > before:
            return t
        time.sleep(0.2)
    raise RuntimeError(f"no new data after {before} in 120 s\n{procs.log_tail(log)}")


def history(home: Home, spec: PlantSpec):  # type: ignore[no-untyped-def]
    from twin.historian import Historian

    with Historian(home.historian_dir(spec.name)) as h:
        return h.read(START, START + timedelta(days=2))  # the plant clock (see plant_time)


def per_sample(frame, spec: PlantSpec, t0: datetime, t1: datetime) -> float:  # type: ignore[no-untyped-def]
    c = tracking_cost(frame, spec, t0, t1)
    return c["cost"] / max(c["samples"], 1.0)


def baseline_cost(frame, spec: PlantSpec, setup: Setup, why: str = "") -> float:  # type: ignore[no-untyped-def]
    """The cost per sample right after deployment (plant minutes [warmup, warmup + baseline]),
    the level every ratio is taken against. A window without samples has no level: the run
    never got there, and `why` (the run's own error, if it had one) says why."""
    w0 = START + timedelta(minutes=setup.warmup_min)
    w1 = w0 + timedelta(minutes=setup.baseline_min)
    c = tracking_cost(frame, spec, w0, w1)
    if c["samples"] == 0 or c["cost"] <= 0:
        reached = "no samples" if frame.empty else f"samples up to {frame.index.max()}"
        raise RuntimeError(
            f"{spec.name}: no cost to compare against: the historian holds no scored samples in "
            f"the baseline window {w0.isoformat()} .. {w1.isoformat()} ({reached})"
            + (f"; the run's error: {why}" if why else "")
        )
    return c["cost"] / c["samples"]


def drift_events(home: Home, spec: PlantSpec) -> tuple[list[dict[str, Any]], int]:
    """retrain_recommended events and the number of model_drift alarms raised."""
    from twin import audit
    from twin.state import Store

    with Store.open(home) as store:
        events = audit.entries(store, plant=spec.name, kind="retrain_recommended")
        alarms = [a for a in store.alarm_history(spec.name) if a.kind == "model_drift"]
    return events, len(alarms)


def commissioning(home: Home, spec: PlantSpec) -> dict[str, Any] | None:
    """The first drift_commissioned event: the live error level against the model card."""
    from twin import audit
    from twin.state import Store

    with Store.open(home) as store:
        found = audit.entries(store, plant=spec.name, kind="drift_commissioned")
    if not found:
        return None
    w = found[0]["what"]
    keys = (
        "model_version",
        "data_ts",
        "measured_one_step",
        "measured_multi_step",
        "one_step",
        "multi_step",
        "within_card_bound",
        "predictions",
        "innovation_mean",
        "innovation_std",
        "innovation_lag1",
        "innovation_scale",
        "innovation_mean_se",
        "trend_threshold",
        "trend_false_alarm",
        "card_rmse",
    )
    last = w.get("last_prediction_ts")
    return {k: w.get(k) for k in keys} | {
        "minute": minutes(datetime.fromisoformat(w["data_ts"])),
        "last_prediction_minute": None if last is None else minutes(datetime.fromisoformat(last)),
    }


def minutes(ts: datetime) -> float:
    return (ts - START).total_seconds() / 60.0


def first_doubling(
    frame, spec: PlantSpec, base: float, setup: Setup, t_from: datetime, t_end: datetime
) -> datetime | None:  # type: ignore[no-untyped-def]
    """First plant time at which the cost over the preceding baseline-length window is >= 2x."""
    width = timedelta(minutes=setup.baseline_min)
    step = timedelta(seconds=spec.plant.control_interval_s)
    t = t_from + width
    while t <= t_end:
        if per_sample(frame, spec, t - width, t) >= 2.0 * base:
            return t
        t += step
    return None


def quiet_cost(frame, spec: PlantSpec, setup: Setup, end: datetime) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The run without drift judged as the drift run is: its own cost right after deployment,
    when (if ever) its rolling cost doubled, and the largest rolling ratio. A cost at the noise
    floor doubles without any drift; a twin that loses the plant does so without drift too.
    `frame` is the quiet run's history."""
    w0 = START + timedelta(minutes=setup.warmup_min)
    base = baseline_cost(frame, spec, setup)
    doubled = first_doubling(frame, spec, base, setup, w0, end)
    width, step = timedelta(minutes=setup.baseline_min), timedelta(minutes=1)
    t, worst = w0 + width, 0.0
    while t <= end:
        worst = max(worst, per_sample(frame, spec, t - width, t) / base)
        t += step
    return {
        "quiet_baseline_cost": base,
        "quiet_cost_doubled_min": None if doubled is None else minutes(doubled),
        "quiet_cost_ratio_max": worst,
    }


def alarm_lead_min(row: dict[str, Any]) -> float | None:
    """Plant minutes from the drift alarm to the cost's doubling (negative: the alarm came
    after it; None: no alarm or no doubling)."""
    a, d = row.get("alarm_min"), row.get("cost_doubled_min")
    return None if a is None or d is None else float(d) - float(a)


def alarm_before_doubling(row: dict[str, Any]) -> bool:
    """The verdict: when the alarm fired, the cost over the baseline-length window ending then
    was still under twice the cost right after deployment (cost_doubled_min is on the control
    interval grid, so it can fall a few samples after a doubling that the alarm came after)."""
    ratio = row.get("cost_at_alarm_ratio")
    return ratio is not None and ratio < 2.0


def retrain(
    spec: PlantSpec,
    home: Home,
    setup: Setup,
    seed: int,
    since: str,
    until: datetime,
    log: Path,
) -> dict[str, Any]:
    """`twin retrain --json` on the live window [since, until]: its record."""
    out = run_cli(
        "retrain",
        str(spec.path),
        "--since",
        since,
        "--until",
        until.isoformat(),
        "--seed",
        str(seed),
        "--max-seconds",
        str(setup.train_seconds),
        *(["--quick"] if setup.quick else []),
        "--json",
        "--home",
        str(home.root),
        log=log,
    )
    start = out.find("\n{")  # the record is the last thing printed, from a line's start
    return dict(json.loads(out if out.startswith("{") else out[start + 1 :]))


def run_step_test(
    spec: PlantSpec,
    home: Home,
    setup: Setup,
    design: dict[str, Any],
    proc: subprocess.Popen[bytes],
    slog: Path,
) -> dict[str, Any]:
    """Request the design (one scripted engineer), approve it (another) and wait while the
    serving runtime runs it; what happened."""
    from twin.api.steptests import validate_design
    from twin.state import Store

    validate_design(spec, design)
    t0 = time.monotonic()
    with Store.open(home) as store:
        cid = store.add_steptest(
            spec.name,
            design,
            user="bench-engineer",
            note="benchmark: the retrain's step test",
            what={"moves": len(design["moves"])},
        )
        store.move_steptest(
            cid,
            user="bench-approver",
            from_=("requested",),
            to="approved",
            kind="steptest_approve",
            why="benchmark: approved by a scripted second engineer",
        )
    wall = 120 + 3 * float(design["duration_s"]) / setup.speed
    status = "approved"
    while time.monotonic() - t0 < wall:
        if proc.poll() is not None:
            raise RuntimeError(f"serve stopped during the step test:\n{procs.log_tail(slog)}")
        with Store.open(home) as store:
            status = store.get_steptest(cid).status
        if status not in ("requested", "approved", "running"):
            break
        time.sleep(1.0)
    return {
        "id": cid,
        "status": status,
        "mvs": design.get("mvs"),
        "plant_minutes": round(float(design["duration_s"]) / 60, 1),
        "wall_s": round(time.monotonic() - t0, 1),
    }


def chain(plant: str, seed: int, setup: Setup, root: Path, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The whole drift-to-retrain chain on one plant; the result row."""
    from twin import registry
    from twin.serve.shadow import score
    from twin.state import Store

    run = root / f"{plant}-s{seed}"
    shutil.rmtree(run, ignore_errors=True)
    spec = spec_on_free_ports(
        plant, run / "spec", setup.staleness_s, setup.proposal_ttl_s, setup.fallback
    )
    home = Home.at(run / "home")
    scenario = setup.scenario or DRIFT[plant]
    row: dict[str, Any] = {
        "plant": plant,
        "seed": seed,
        "scenario": scenario,
        "drift_run_min": setup.drift_run_min or DRIFT_RUN_MIN[plant],
    }
    t0 = time.monotonic()
    v1 = train_v1(spec, home, setup, seed)
    row["v1"], row["v1_train_wall_s"] = v1, round(time.monotonic() - t0, 1)
    log(f"[{plant} s{seed}] v1 {v1} trained in {row['v1_train_wall_s']} s")
    quiet_home = Home.at(run / "quiet")
    shutil.copytree(home.models_dir(spec.name), quiet_home.models_dir(spec.name))

    sim = Plant(spec, run, scenario, seed, setup.speed)
    slog = run / "serve-drift.log"
    proc = serve(spec, home, slog, "auto")
    run_min = setup.drift_run_min or DRIFT_RUN_MIN[plant]
    end = START + timedelta(minutes=run_min)
    wall = 120 + 2 * run_min * 60 / setup.speed
    try:
        time.sleep(3)
        sim.start()
        wait_plant(home, spec, end, proc, slog, wall, setup.after_alarm_min)
        end = plant_time(home, spec) or end  # the drift run ends here; retraining reads up to it
        events, _ = drift_events(home, spec)
        v2 = None
        if events:  # 3. retrain while v1 keeps controlling
            since = events[0]["what"]["onset_ts"]
            t1 = time.monotonic()
            retrained = retrain(spec, home, setup, seed, since, end, run / "retrain.log")
            v2 = str(retrained["version"])
            row["retrain_wall_s"] = round(time.monotonic() - t1, 1)
            row["retrain_excitation"] = retrained.get("excitation")
            log(f"[{plant} s{seed}] v2 {v2} retrained since {since} in {row['retrain_wall_s']} s")
            design = retrained.get("step_test_design")
            if setup.step_test and design:  # 3b. the step test it asks for, then retrain over it
                row["step_test"] = run_step_test(spec, home, setup, design, proc, slog)
                log(f"[{plant} s{seed}] step test {row['step_test']}")
                t2 = time.monotonic()
                until = plant_time(home, spec) or end
                retrained = retrain(spec, home, setup, seed, since, until, run / "retrain.log")
                row["v2_before_step_test"], v2 = v2, str(retrained["version"])
                row["retrain2_wall_s"] = round(time.monotonic() - t2, 1)
                row["retrain2_excitation"] = retrained.get("excitation")
                log(f"[{plant} s{seed}] v2 {v2} retrained over the step test")
    except RuntimeError as exc:  # a failed retraining is a figure too
        row["error"] = repr(exc)[-2000:]
    finally:
        procs.stop(proc)
    frame = history(home, spec)
    events, alarms = drift_events(home, spec)
    w0 = START + timedelta(minutes=setup.warmup_min)
    base = baseline_cost(frame, spec, setup, row.get("error", ""))
    drift_end = end
    doubled = first_doubling(frame, spec, base, setup, w0, drift_end)
    alarm_ts = datetime.fromisoformat(events[0]["what"]["data_ts"]) if events else None
    row.update(
        baseline_cost=base,
        drift_alarms=alarms,
        alarm_min=None if alarm_ts is None else minutes(alarm_ts),
        onset_min=None
        if not events
        else minutes(datetime.fromisoformat(events[0]["what"]["onset_ts"])),
        cost_doubled_min=None if doubled is None else minutes(doubled),
        cost_at_alarm_ratio=None
        if alarm_ts is None
        else per_sample(frame, spec, alarm_ts - timedelta(minutes=setup.baseline_min), alarm_ts)
        / base,
        cost_drifted_ratio=per_sample(
            frame, spec, drift_end - timedelta(minutes=setup.baseline_min), drift_end
        )
        / base,
        retrain_command=None if not events else events[0]["what"].get("retrain"),
        fired_by=None if not events else events[0]["what"].get("fired_by"),
        commissioning=commissioning(home, spec),
    )
    row["alarm_before_doubling"] = alarm_before_doubling(row)
    row["alarm_lead_min"] = alarm_lead_min(row)
    try:
        if v2 is not None:  # 4. shadow, then the gate
            slog = run / "serve-shadow.log"
            proc = serve(
                spec,
                home,
                slog,
                setup.shadow_mode,
                "--shadow",
                v2,
                "--steps",
                str(setup.shadow_steps),
            )
            if (
                proc.wait(
                    120 + 3 * setup.shadow_steps * spec.plant.control_interval_s / setup.speed
                )
                != 0
            ):
                raise RuntimeError(procs.log_tail(slog))
            with Store.open(home) as store:
                row["shadow"] = score(home, spec, store, v2).to_dict()
            out = subprocess.run(
                procs.twin_cmd(
                    "models",
                    "promote",
                    str(spec.path),
                    v2,
                    "--gated",
                    "--margin",
                    str(setup.margin),
                    "--min-intervals",
                    str(setup.min_intervals),
                    "--home",
                    str(home.root),
                ),
                capture_output=True,
                text=True,
                env={**os.environ, **ENV},
            )
            row["promotion"] = (out.stdout + out.stderr).strip()[-600:]
            row["promoted"] = registry.active_version(home, spec) == v2
            row["v2"] = v2
            if not setup.after:
                raise _Done
            # 5. the active twin controls again: cost over the same-length window
            before = plant_time(home, spec) or end
            slog = run / "serve-after.log"
            proc = serve(spec, home, slog, "auto")
            now = wait_new_data(home, spec, before, proc, slog)
            a0 = now + timedelta(minutes=setup.warmup_min)
            a1 = a0 + timedelta(minutes=setup.baseline_min)
            wait_plant(
                home, spec, a1, proc, slog, 120 + 3 * (a1 - now).total_seconds() / setup.speed
            )
            procs.stop(proc)
            frame = history(home, spec)
            row["after_cost_ratio"] = per_sample(frame, spec, a0, a1) / base
            row["after_window_min"] = [minutes(a0), minutes(a1)]
    except _Done:
        pass
    except Exception as exc:  # the figures so far still count; the failure is in the row
        row["error"] = repr(exc)[-2000:]
    finally:
        procs.stop(proc)
        sim.stop()
    if setup.quiet:  # 6. the equal stretch without drift
        qsim = Plant(spec, run, None, seed, setup.speed)
        qlog = run / "serve-quiet.log"
        proc = serve(spec, quiet_home, qlog, "auto")
        try:
            time.sleep(3)
            qsim.start()
            wait_plant(quiet_home, spec, end, proc, qlog, wall)
        finally:
            procs.stop(proc)
            qsim.stop()
        qevents, qalarms = drift_events(quiet_home, spec)
        qframe = history(quiet_home, spec)
        row["quiet_alarms"], row["quiet_events"] = qalarms, len(qevents)
        row["quiet_alarm_min"] = [
            minutes(datetime.fromisoformat(e["what"]["data_ts"])) for e in qevents
        ]
        row["quiet_fired_by"] = [e["what"].get("fired_by") for e in qevents]
        row["quiet_commissioning"] = commissioning(quiet_home, spec)
        row["quiet_cost_ratio"] = (
            per_sample(qframe, spec, end - timedelta(minutes=setup.baseline_min), end) / base
        )
        row["quiet_minutes"] = minutes(end)
        row.update(quiet_cost(qframe, spec, setup, end))
    row["wall_s"] = round(time.monotonic() - t0, 1)
    return row


class _LiveReplay:
    """What the drift monitor reads of the live buffer, from the historian (values held)."""

    def __init__(self, wide, period_s: float) -> None:  # type: ignore[no-untyped-def]
        self.wide, self.period_s, self.t = wide, period_s, START

    def newest_ts(self) -> datetime:
        return self.t

    def window(self, names: list[str], samples: int, end: datetime):  # type: ignore[no-untyped-def]
        import pandas as pd

        step = pd.Timedelta(seconds=self.period_s)
        grid = pd.date_range(end=pd.Timestamp(end), periods=samples, freq=step)
        rows = self.wide.reindex(columns=names).reindex(grid, method="ffill", tolerance=3 * step)
        return rows.to_numpy(dtype=float)


class _StoreReplay:
    """The state store as the monitor saw it at plant time `t`; events are collected."""

    def __init__(self, store, proposals) -> None:  # type: ignore[no-untyped-def]
        self.store, self.proposals, self.t = store, proposals, START
        self.events: list[dict[str, Any]] = []

    def list_proposals(self, plant: str | None = None, limit: int = 100):  # type: ignore[no-untyped-def]
        seen = [p for p in self.proposals if p.data_ts <= self.t]
        return list(reversed(seen[-limit:]))

    def get_decision(self, proposal_id: int):  # type: ignore[no-untyped-def]
        return self.store.get_decision(proposal_id)

    def writes_for(self, **kw: Any):  # type: ignore[no-untyped-def]
        return self.store.writes_for(**kw)

    def log_event(self, **kw: Any) -> None:
        self.events.append(kw)


class _NoAlarms:
    def condition(self, *args: Any, **kw: Any) -> None:
        pass


def _monitor_module(commit: str | None):  # type: ignore[no-untyped-def]
    """twin.health.monitor as it is now, or as it was at `commit` (with the health modules of
    that commit it imports)."""
    import twin.serve  # noqa: F401  (the monitor's package imports; it is loaded through it)

    if commit is None:
        import twin.health.monitor as now

        return now
    import importlib.util

    folder = Path(tempfile.mkdtemp(prefix="drift-at-"))
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", commit, "twin/health/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = [Path(p).stem for p in listing if p.endswith(".py") and not p.endswith("__init__.py")]
    for name in names:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:twin/health/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for other in names:  # the commit's health modules import each other, not today's
            text = text.replace(f"from twin.health.{other} import", f"from {other}_{commit} import")
        (folder / f"{name}_{commit}.py").write_text(text, encoding="utf-8")
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(
        f"monitor_{commit}", folder / f"monitor_{commit}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def replay(run: Path, which: str, commit: str | None) -> dict[str, Any]:
    """The drift tests of the code at `commit` (None: now) run offline over a finished run's
    records (v1's proposals, decisions and writes; the historian's values): its commissioning
    and alarms on the same data the run produced. The OOD trigger is not replayed (the runtime's
    OOD ratio is not recorded per interval)."""
    from twin.historian import Historian
    from twin.state import Store

    spec = load_spec(run / "spec" / "plant.toml")
    home = Home.at(run / which)
    with Historian(home.historian_dir(spec.name)) as h:
        wide = h.read(START, START + timedelta(days=2))
    monitor = _monitor_module(commit)
    with Store.open(home) as store:
        mine = [
            p for p in store.list_proposals(spec.name, limit=10**6) if p.model_version == "v001"
        ]
        proposals = sorted(mine, key=lambda p: p.id)
        if not proposals:
            return {"error": "no v001 proposals"}
        view, live = _StoreReplay(store, proposals), _LiveReplay(wide, spec.plant.sample_period_s)
        m = monitor.DriftMonitor(home, spec, view, _NoAlarms(), live)
        step = timedelta(seconds=spec.plant.control_interval_s)
        t, end, peak = proposals[0].data_ts, proposals[-1].data_ts + 6 * step, (0.0, None)
        # Each test's own first firing (the event names only the first of them); the MV-level
        # test exists only in code since it was added.
        first: dict[str, float | None] = {"errors": None, "disturbance": None, "mv_level": None}
        mv_peak = (0.0, None)
        while t <= end:
            live.t = view.t = t
            m.check("v001", None)
            if m.bias is not None and m.bias.level > peak[0]:
                peak = (m.bias.level, minutes(t))
            mv = getattr(m, "mv_level", None)
            if mv is not None and mv.level > mv_peak[0]:
                mv_peak = (mv.level, minutes(t))
            for name, test in (("errors", m.state), ("disturbance", m.bias), ("mv_level", mv)):
                if first[name] is None and getattr(test, "fired", False):
                    first[name] = minutes(t)
            t += step
    events = [(e["kind"], e["what"]) for e in view.events]
    commissioned = [w for k, w in events if k == "drift_commissioned"]
    fired = [w for k, w in events if k == "retrain_recommended"]
    threshold = getattr(m.bias, "threshold", None) or getattr(m.config, "bias_threshold", None)
    return {
        "code": commit or "now",
        "commissioned_min": minutes(datetime.fromisoformat(commissioned[0]["data_ts"]))
        if commissioned
        else None,
        "commissioning_predictions": commissioned[0]["predictions"] if commissioned else None,
        "alarm_min": minutes(datetime.fromisoformat(fired[0]["data_ts"])) if fired else None,
        "fired_by": fired[0]["fired_by"] if fired else None,
        "trend_threshold": threshold,
        "trend_peak": peak[0],
        "trend_peak_min": peak[1],
        "first_alarm_min": first,
        "mv_level_threshold": getattr(getattr(m, "mv_level", None), "threshold", None),
        "mv_level_peak": mv_peak[0],
        "mv_level_peak_min": mv_peak[1],
    }


def training(run: Path) -> dict[str, Any]:
    """How far each version of the run's drift home trained (its model card)."""
    import re as _re

    from twin import registry

    spec = load_spec(run / "spec" / "plant.toml")
    home, out = Home.at(run / "home"), {}
    for m in registry.list_models(home, spec):
        card = registry.load_checkpoint(home, spec, m["version"]).get("card") or {}
        t = card.get("training") or {}
        epochs = [
            int(x.group(1)) if (x := _re.search(r"epoch (\d+)", str(t.get(k)))) else None
            for k in ("stopped", "obs_model_stopped")
        ]
        out[m["version"]] = {
            "jepa_epochs": epochs[0],
            "jepa_stopped": t.get("stopped"),
            "obs_epochs": epochs[1],
            "obs_stopped": t.get("obs_model_stopped"),
            "seconds": t.get("seconds"),
        }
    return out


def pi_loop(plant: str, scenario: str | None, seed: int, run_min: float):  # type: ignore[no-untyped-def]
    """The plant's simulator under decentralised PI control (twin.baselines.pid) holding the
    spec's setpoints: its samples (wide frame on the plant clock from START), no twin at all.
    What the MV-level test sees of a loop that compensates a drift."""
    import pandas as pd

    from plants.base import Simulation
    from twin.baselines.pid import PidController

    spec = load_spec(plant)
    sim = Simulation(spec, seed=seed, scenario=scenario, start=START)
    pid = PidController(spec, sim.model)
    setpoints = dict(spec.objective.setpoints)
    y, rows, stamps = sim.measure(), [], []
    for _ in range(int(run_min * 60 / spec.plant.control_interval_s)):
        sim.set_mvs(pid.decide(y, sim.mv, setpoints))
        for _ in range(spec.plant.samples_per_interval):
            y = sim.step()
            rows.append(dict(y))
            stamps.append(sim.time)
    return pd.DataFrame(rows, index=pd.DatetimeIndex(stamps))


def mv_level_alarm(frame, spec: PlantSpec, config=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The MV-level test (twin.health.mv_level) run over a loop's samples as the runtime runs
    it: commissioned on plant minutes [settle, settle + mv_commission] from START, then one
    term per control interval. Its first alarm (plant minute), onset and peak."""
    from twin.health.drift_config import DriftConfig
    from twin.health.mv_level import MVLevelCommissioning, MVLevelState

    cfg = config or DriftConfig()
    step = timedelta(seconds=spec.plant.control_interval_s)
    spans = {t.name: t.operating_limits[1] - t.operating_limits[0] for t in spec.mvs}
    comm, state = MVLevelCommissioning(), None
    fired = onset = None
    peak, t = 0.0, START + step
    while t <= frame.index.max():
        since = (t - START).total_seconds()
        seen = {m.name: frame[m.name].loc[:t].dropna() for m in spec.mvs}
        mvs = {mv: float(v.iloc[-1]) if len(v) else None for mv, v in seen.items()}
        if cfg.settle_s <= since < cfg.settle_s + cfg.mv_commission_s:
            comm.add(mvs)
        elif since >= cfg.settle_s + cfg.mv_commission_s:
            if state is None:
                state = MVLevelState(comm.reference(spans, cfg), cfg, step.total_seconds())
            if state.update(mvs) and fired is None:
                fired = minutes(t)
            onset = None if state.level <= 0 else (onset if onset is not None else minutes(t))
            peak = max(peak, state.level)
            if fired is not None:
                break
        t += step
    return {
        "alarm_min": fired,
        "onset_min": onset if fired is not None else None,
        "peak": peak,
        "threshold": None if state is None else state.threshold,
        "reference": None if state is None else state.reference.to_dict(),
    }


def pi_mv_level(plants: list[str], seeds: list[int], setup: Setup) -> list[dict[str, Any]]:
    """The MV-level test on PI-controlled drift and quiet runs of each plant: alarm, lead over
    the loop's own cost doubling, and alarms without drift."""
    out = []
    for plant in plants:
        spec = load_spec(plant)
        run_min = setup.drift_run_min or DRIFT_RUN_MIN[plant]
        w0 = START + timedelta(minutes=setup.warmup_min)
        for seed in seeds:
            row: dict[str, Any] = {"plant": plant, "seed": seed, "controller": "pid"}
            for key, scenario in (("drift", DRIFT[plant]), ("quiet", None)):
                frame = pi_loop(plant, scenario, seed, run_min)
                base = baseline_cost(frame, spec, setup)
                end = frame.index.max().to_pydatetime()
                doubled = first_doubling(frame, spec, base, setup, w0, end)
                found = mv_level_alarm(frame, spec)
                row[key] = {
                    **found,
                    "cost_doubled_min": None if doubled is None else minutes(doubled),
                    "cost_end_ratio": per_sample(
                        frame, spec, end - timedelta(minutes=setup.baseline_min), end
                    )
                    / base,
                    "mv_start": {m.name: float(frame[m.name].iloc[0]) for m in spec.mvs},
                    "mv_end": {m.name: float(frame[m.name].iloc[-1]) for m in spec.mvs},
                }
            row["drift"]["lead_min"] = alarm_lead_min(row["drift"])
            print(
                plant,
                seed,
                "drift alarm",
                _fmt(row["drift"]["alarm_min"]),
                "cost doubled",
                _fmt(row["drift"]["cost_doubled_min"]),
                "quiet alarm",
                _fmt(row["quiet"]["alarm_min"]),
                "quiet peak",
                _fmt(row["quiet"]["peak"]),
                flush=True,
            )
            out.append(row)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else "nan"
    return str(v)


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = [
        "plant",
        "seed",
        "baseline_cost",
        "onset_min",
        "alarm_min",
        "fired_by",
        "cost_doubled_min",
        "alarm_lead_min",
        "cost_at_alarm_ratio",
        "cost_drifted_ratio",
        "alarm_before_doubling",
        "quiet_alarms",
        "quiet_cost_doubled_min",
        "quiet_cost_ratio_max",
        "shadow_improvement",
        "promoted",
        "after_cost_ratio",
    ]
    print(" | ".join(cols))
    for r in rows:
        r = {**r, "shadow_improvement": (r.get("shadow") or {}).get("improvement")}
        print(" | ".join(_fmt(r.get(c)) for c in cols))


def save(out: Path, setup: Any, rows: list[dict[str, Any]]) -> None:
    """One run's result file: its setup, rows, machine and time."""
    result = {
        "setup": asdict(setup),
        "rows": rows,
        "machine": machine_info(),
        "at": datetime.now(UTC).isoformat(),
    }
    out.write_text(json.dumps(result, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plants", default="cstr,four_tank")
    p.add_argument("--seeds", default="0")
    p.add_argument("--speed", type=float, default=50.0)
    p.add_argument("--train-seconds", type=float, default=60.0)
    p.add_argument("--drift-minutes", type=float, default=None, help="default: DRIFT_RUN_MIN")
    p.add_argument(
        "--fallback",
        default="hold",
        choices=("hold", "linear_mpc"),
        help="the spec's [safety] fallback while the twin abstains",
    )
    p.add_argument(
        "--step-test",
        action="store_true",
        help="run the step test a poorly excited retrain window asks for, then retrain over it",
    )
    p.add_argument(
        "--shadow-mode",
        default="supervised",
        choices=("supervised", "auto"),
        help="serve mode during shadow: the plant holds (supervised) or stays controlled (auto)",
    )
    p.add_argument(
        "--pi-mv-level",
        action="store_true",
        help="only the MV-level test on PI-controlled drift and quiet runs (no twin, no"
        " processes); writes --out (default results/maintenance_mv_level.json)",
    )
    p.add_argument("--out", default=None, help="default: results/maintenance.json")
    p.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "twin-maintenance"))
    p.add_argument("--merge", nargs="*", help="Only merge these result files into --out.")
    p.add_argument(
        "--replay",
        nargs="*",
        help="With --merge: replay the drift tests of the code now and of these commits over"
        " each row's drift and quiet runs (kept under --root) and add them to its row.",
    )
    args = p.parse_args(argv)
    setup = Setup(
        speed=args.speed,
        train_seconds=args.train_seconds,
        drift_run_min=args.drift_minutes,
        fallback=args.fallback,
        step_test=args.step_test,
        shadow_mode=args.shadow_mode,
    )
    rows: list[dict[str, Any]] = []
    results = ROOT / "benchmarks" / "results"
    if args.pi_mv_level:
        out = Path(args.out or results / "maintenance_mv_level.json")
        seeds = [int(s) for s in args.seeds.split(",")]
        found = pi_mv_level(args.plants.split(","), seeds, setup)
        save(out, setup, found)
        return 0
    out = Path(args.out or results / "maintenance.json")
    if args.merge:  # runs made apart (one plant each), saved as one result
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = [r for part in parts for r in part["rows"]]
        for r in rows:  # the verdict by the one rule above (older runs used the grid time)
            if "cost_at_alarm_ratio" in r:
                r["alarm_before_doubling"] = alarm_before_doubling(r)
                r["alarm_lead_min"] = alarm_lead_min(r)
        for r in rows if args.replay is not None else []:
            run = Path(args.root) / f"{r['plant']}-s{r['seed']}"
            r["training"] = training(run)
            spec = load_spec(run / "spec" / "plant.toml")
            for key, which in (("commissioning", "home"), ("quiet_commissioning", "quiet")):
                if (run / which).exists():  # read again: the keys recorded since the run
                    r[key] = commissioning(Home.at(run / which), spec)
            if (run / "quiet").exists() and r.get("quiet_minutes"):
                end = START + timedelta(minutes=float(r["quiet_minutes"]))
                r.update(quiet_cost(history(Home.at(run / "quiet"), spec), spec, setup, end))
            r["replay"] = {
                which: [replay(run, which, c) for c in (None, *args.replay)]
                for which in ("home", "quiet")
                if (run / which).exists()
            }
            print(r["plant"], r["seed"], json.dumps(r["replay"], default=str), flush=True)

        def each(part: dict[str, Any], one: str, many: str) -> list[Any]:
            """A part's value(s): a single run's `one`, or a merged file's list `many`."""
            return list(part[many]) if many in part else [part.get(one)]

        merged = {
            "setups": [s for x in parts for s in each(x, "setup", "setups")],
            "rows": rows,
            "at": [a for x in parts for a in each(x, "at", "at")],
            "machine": [m for x in parts for m in each(x, "machine", "machine")],
        }
        out.write_text(json.dumps(merged, indent=2, default=str))
        print_table(rows)
        return 0
    for plant in args.plants.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            try:
                rows.append(chain(plant, seed, setup, Path(args.root)))
            except Exception as exc:  # a failed chain is a row too
                rows.append({"plant": plant, "seed": seed, "error": repr(exc)[-2000:]})
            save(out, setup, rows)
            print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
