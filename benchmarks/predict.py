"""Prediction benchmark of the JEPA twin against its ablations, persistence, ARX and an
observation-space model.

For each plant and data seed: 6 simulated hours from twin.generate with PRBS excitation, the
last contiguous 20 % held out; train the twin (and its baselines) on the rest; NRMSE at 1, 5,
10 and 30 control intervals on the held-out block. The floor is the true simulator started from
the true state at each anchor, under the recorded MVs, disturbances held at their last value,
scored against the same noisy measurements.

Ablations (same data, same epochs and early stopping): latent losses off (w_pred = w_rollout =
0), probe (readout on detached latents: the representation comes from the JEPA terms alone),
SIGReg off, SIGReg and BatchNorm off. The observation-space model has the JEPA's parameter count
and the same training rules. Also: 5-95 % band coverage, the OOD gate's false alarms on held-out
data and on an hour held still at the nominal MVs, and its detection of sensor faults (on data)
and of plant faults made with the simulator (an MV outside the excited band, an unmeasured
disturbance step). Means over seeds with a 95 % t-interval. Prints tables; writes
benchmarks/results/predict.json.

    python benchmarks/predict.py [--plants cstr four_tank] [--seeds 0 1 2] [--hours 6]

--outside: the plant defined outside the repository (tests/model/outside_plant: a spec, and a
simulator used only to write its CSV history), as a new user brings one: 12 h of CSV through
the import path, `twin train`'s default configs, held-out NRMSE against ARX and persistence,
and an hour held still at mid-band (OOD refusals). Writes benchmarks/results/predict_outside.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _machine import machine_info
from scipy import stats

from plants import load_plant_model
from plants.base import Scenario, Simulation, integrate, step
from twin import registry
from twin.data import DataConfig, PlantSeries
from twin.evaluate import HORIZONS, evaluate, gate_false_alarms, ood_quality, windows_of
from twin.generate import generate
from twin.historian import Historian
from twin.io import import_file
from twin.model.calibration import fit_bands
from twin.model.comparisons import ablation_report
from twin.model.config import ABLATIONS, ModelConfig
from twin.model.net import JepaNet
from twin.model.ood import FALSE_ALARM_LIMIT
from twin.model.twin_model import TwinModel
from twin.paths import Home
from twin.plan.gating import ood_ratio
from twin.spec import load_spec
from twin.train import TrainConfig, torch_threads, train_plant, train_series
from twin.train_presets import train_configs

# An unmeasured disturbance stepped at the onset, per plant: jacket fouling (UA -15 %) on the
# cstr, a leak opening in tank 1 of the four-tank process.
DISTURBANCE_STEP = {"cstr": ("ua_factor", 1.0, 0.85), "four_tank": ("leak1_area", 0.0, 0.012)}
HOLD_HOURS = 1.0

RESULTS = Path(__file__).resolve().parent / "results" / "predict.json"
OUTSIDE = Path(__file__).resolve().parents[1] / "tests" / "model" / "outside_plant"
OUTSIDE_RESULTS = RESULTS.with_name("predict_outside.json")
START = datetime(2026, 1, 1, tzinfo=UTC)
FLOOR_ANCHORS = 60


def true_states(spec, wide: pd.DataFrame) -> np.ndarray:
    """Noise-free state at every sample row, replaying the recorded MVs (no scenario: d nominal)."""
    model = load_plant_model(spec)
    u0, d = model.nominal()
    mv = wide[list(model.mv_names)].ffill().bfill().to_numpy()
    x = model.steady_state(np.asarray(u0, float), np.asarray(d, float))
    dt = spec.plant.sample_period_s
    states = np.empty((len(mv), len(x)))
    for k in range(len(mv)):
        states[k] = x
        x = integrate(model, x, mv[k], d, k * dt, dt)
    return states


def floor_nrmse(spec, series: PlantSeries, wide: pd.DataFrame, states: np.ndarray) -> dict:
    """NRMSE of the true simulator from the true state (disturbances held), per horizon."""
    model = load_plant_model(spec)
    _, d = model.nominal()
    mv = wide[list(model.mv_names)].ffill().bfill().to_numpy()
    anchors = series.anchors("test", max(HORIZONS), aligned=True)
    anchors = anchors[
        np.linspace(0, len(anchors) - 1, min(FLOOR_ANCHORS, len(anchors))).astype(int)
    ]
    cv = [t.name for t in spec.cvs]
    cv_idx = [spec.tag_names.index(c) for c in cv]
    spi, dt = series.spi, spec.plant.sample_period_s
    preds = {h: [] for h in HORIZONS}
    targets = {h: [] for h in HORIZONS}
    for a in anchors:
        x = states[a].copy()
        for j in range(max(HORIZONS) * spi):
            x = integrate(model, x, mv[a + j], d, (a + j) * dt, dt)
            if (j + 1) % spi == 0 and (j + 1) // spi in preds:
                h = (j + 1) // spi
                out = model.outputs(x, mv[a + j + 1], d)
                preds[h].append([out[c] for c in cv])
                targets[h].append(series.raw[a + h * spi, cv_idx])
    std = series.cv_std("test")
    res = {}
    for h in HORIZONS:
        p, t = np.array(preds[h]), np.array(targets[h])
        ok = np.isfinite(t)
        err = np.where(ok, p - t, 0.0) ** 2
        res[str(h)] = float((np.sqrt(err.sum(0) / np.maximum(ok.sum(0), 1)) / std).mean())
    return res


def simulate(spec, seed: int, n: int, mvs_at, scenario: Scenario | None = None) -> np.ndarray:
    """(n, n_tags) measurements of a simulation from the nominal steady state; mvs_at(k) gives
    the MV values to hold from sample k on (None: keep)."""
    model = load_plant_model(spec)
    if scenario is not None:
        model.scenarios[scenario.name] = scenario
    sim = Simulation(spec, seed=seed, start=START, model=model, scenario=scenario and scenario.name)
    rows = np.empty((n, len(spec.tag_names)))
    for k in range(n):
        mv = mvs_at(k)
        if mv:
            sim.set_mvs(mv)
        m = sim.step()
        rows[k] = [m[t] for t in spec.tag_names]
    return rows


def flagged(tw: TwinModel, rows: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The gate's verdict (bool per window: refused) on the windows of rows ending at `ends`,
    asked as the planner and the write guard ask it."""
    w = tw.window
    return np.array([ood_ratio(tw, rows[e - w + 1 : e + 1]) > 1 for e in ends])


def plant_faults(tw: TwinModel, spec, seed: int, series: PlantSeries) -> dict:
    """Held still for an hour at the nominal MVs (false alarms), an MV stepped outside the band
    the data excited, an unmeasured disturbance step (detection within 5 intervals)."""
    spi, w = series.spi, series.window
    nominal = load_plant_model(spec).nominal()[0]
    mv_names = [t.name for t in spec.mvs]
    hold_n = int(HOLD_HOURS * 3600 / spec.plant.sample_period_s)
    rows = simulate(spec, seed + 100, hold_n, lambda k: None)
    still = flagged(tw, rows, np.arange(w - 1, hold_n, spi))
    onset, n = w + 2 * spi, w + 8 * spi
    ends = onset - 1 + spi * np.arange(1, 6)
    lo_tr, hi_tr = series.blocks["train"]
    unexcited = []
    for j, name in enumerate(mv_names):
        tag = spec.tag(name)
        seen = series.raw[lo_tr:hi_tr, spec.tag_names.index(name)]
        seen_lo, seen_hi = np.nanmin(seen), np.nanmax(seen)
        for side, value in (("low", tag.limits[0]), ("high", tag.limits[1])):
            # Halfway from the excited band's edge to the engineering limit.
            edge = seen_lo if side == "low" else seen_hi
            target = edge + 0.5 * (value - edge)
            mv = {m: float(nominal[i]) for i, m in enumerate(mv_names)} | {name: float(target)}
            r = simulate(spec, seed + 200 + j, n, lambda k, mv=mv: mv if k == onset else None)
            unexcited.append(bool(flagged(tw, r, ends).any()))
    key, before, after = DISTURBANCE_STEP[spec.name]
    sc = Scenario(
        "bench_step",
        "unmeasured step",
        {key: step(onset * spec.plant.sample_period_s, before, after)},
    )
    dist = []
    for rep in range(4):
        r = simulate(spec, seed + 300 + rep, n, lambda k: None, sc)
        dist.append(bool(flagged(tw, r, ends).any()))
    return {
        "held_still_false_alarm": float(still.mean()),
        "held_still_windows": int(len(still)),
        "unexcited_region_detection": float(np.mean(unexcited)),
        "unmeasured_disturbance_detection": float(np.mean(dist)),
        "disturbance": f"{key} {before} -> {after}",
    }


def make_series(spec, seed: int, hours: float) -> PlantSeries:
    long = generate(spec, hours, "prbs", seed=seed, start=START, progress=False)
    good = long[long["quality"] == 0]
    wide = good.pivot(index="ts", columns="tag", values="value").reindex(columns=spec.tag_names)
    return PlantSeries(wide, spec, DataConfig())


def remeasure_gates(
    result: dict,
    cache: Path,
    hours: float,
    rates: tuple[float, ...] = (),
    previous_gate: bool = False,
) -> None:
    """Refit and re-measure the OOD gate and the band calibration of every cached full twin
    (same data, same weights): both are fitted after training, so they need no retraining.
    The figures the file had are kept under ood_previous (a before/after on the same twins;
    `previous_gate`: the gate with one global consistency scale there instead);
    `rates`: held-out false alarms of the gate refit at each of these design rates too
    (false_alarm_at_rate: how the realised rate follows the design rate)."""
    for plant, s in result["plants"].items():
        spec = load_spec(plant)
        for r in s["runs"]:
            ckpt = torch.load(cache / f"{plant}_{r['seed']}.pt", weights_only=True)
            series = make_series(spec, r["seed"], hours)
            mc = dict(ckpt["model_config"]) | {
                "quantiles": tuple(ckpt["model_config"]["quantiles"])
            }
            net = JepaNet(
                ModelConfig(**mc),
                series.window,
                len(spec.tag_names),
                len(series.mv_idx),
                len(series.cv_idx),
            )
            state = ckpt["state_dict"]
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            roles = {t.name: t.role for t in spec.tags}
            fresh = TwinModel(
                net, series.normalizer, roles, series.window, series.spi, series.config
            )
            cfg = TrainConfig()
            with torch_threads(1):
                # The gate as this result file had it, or (previous_gate) with one global
                # consistency scale: a before/after on the same twins.
                r["ood_previous"] = (
                    gate_report(fresh, spec, r["seed"], series, cfg.ood_false_alarm, False)
                    if previous_gate
                    else r["ood"]
                )
                fit_bands(fresh, series, "val")
                r["bands"] = evaluate(fresh, series)["bands"]
                x_train, x_val = windows_of(series, "train"), windows_of(series, "val")
                r["false_alarm_at_rate"] = {}
                for rate in rates:
                    fresh.set_ood_reference(x_train, x_val, rate)
                    r["false_alarm_at_rate"][str(rate)] = gate_false_alarms(fresh, series)
                r["ood"] = gate_report(fresh, spec, r["seed"], series, cfg.ood_false_alarm)
            print(f"{plant} seed {r['seed']}: gate {r['ood']}", flush=True)
        s.update(summarise(s["runs"]))
        s["targets"] = targets(plant, s)


def gate_report(
    tw: TwinModel,
    spec,
    seed: int,
    series: PlantSeries,
    false_alarm: float,
    local_consistency: bool = True,
) -> dict:
    """Refit the twin's OOD gate (same weights, same data) and measure it: held-out false
    alarms, and detection of the plant's synthetic faults."""
    tw.set_ood_reference(
        windows_of(series, "train"), windows_of(series, "val"), false_alarm, local_consistency
    )
    return (
        ood_quality(tw, series, "test")
        | gate_false_alarms(tw, series)
        | plant_faults(tw, spec, seed, series)
    )


def run_one(
    plant: str,
    seed: int,
    hours: float,
    ablations: list[str],
    epochs: int | None = None,
    cache: Path | None = None,
    previous_gate: bool = False,
) -> dict:
    """`previous_gate`: also measure the gate as it was before the window consistency check's
    local residual scale (one global scale), on the same twin, under ood_previous."""
    spec = load_spec(plant)
    series = make_series(spec, seed, hours)
    cfg = TrainConfig(seed=seed, progress=False)
    cfg = replace(cfg, epochs=epochs) if epochs else cfg
    t0 = time.perf_counter()
    out = train_series(series, ModelConfig(), cfg)
    wall = time.perf_counter() - t0
    if cache is not None:  # the full twin, to re-measure its gates without retraining
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(out.twin.checkpoint(), cache / f"{plant}_{seed}.pt")
    grid = pd.DataFrame(series.raw, columns=spec.tag_names)
    states = true_states(spec, grid)
    floor = floor_nrmse(spec, series, grid, states)
    with torch_threads(1):
        abl = {name: ablation_report(series, ModelConfig(), cfg, name) for name in ablations}
        ood = (
            out.report["ood"]
            | gate_false_alarms(out.twin, series)
            | plant_faults(out.twin, spec, seed, series)
        )
        # Measured last: it refits the twin's gate (the twin is not used after it).
        previous = (
            {
                "ood_previous": gate_report(
                    out.twin, spec, seed, series, cfg.ood_false_alarm, local_consistency=False
                )
            }
            if previous_gate
            else {}
        )
    return {
        "seed": seed,
        "nrmse": {m: r["nrmse"] for m, r in out.report["models"].items()}
        | {f"ablation:{k}": v["nrmse"] for k, v in abl.items()}
        | {"true_simulator_floor": floor},
        "ablations": abl,
        "monitors": out.report["monitors"],
        "bands": out.report["bands"],
        "ood": ood,
        "train_seconds": out.train_info["seconds"],
        "obs_model_seconds": out.train_info["obs_model_seconds"],
        "total_seconds": round(wall, 1),
        "steps": out.train_info["steps"],
        "stopped": out.train_info["stopped"],
        "obs_model_stopped": out.train_info["obs_model_stopped"],
        "params": out.train_info["params"],
        "arx_orders": [out.arx.config.na, out.arx.config.nb],
        "anchors": out.report["anchors"],
        "load_1m": os.getloadavg()[0],
    } | previous


def add_ablations(
    src: Path, out: Path, plants: list[str], seeds: list[int], ablations: list[str]
) -> None:
    """Train more ablations for runs already in a result file, as run_one would have."""
    result = json.loads(src.read_text())
    for plant, s in result["plants"].items():
        if plant not in plants:
            continue
        spec = load_spec(plant)
        for r in s["runs"]:
            if r["seed"] not in seeds:
                continue
            series = make_series(spec, r["seed"], result["hours"])
            cfg = TrainConfig(seed=r["seed"], progress=False)
            with torch_threads(1):
                for name in ablations:
                    rep = ablation_report(series, ModelConfig(), cfg, name)
                    rep["load_1m"] = os.getloadavg()[0]
                    r["ablations"][name] = rep
                    r["nrmse"][f"ablation:{name}"] = rep["nrmse"]
                    print(f"{plant} seed {r['seed']} {name}: {rep['nrmse']} ({rep['stopped']})")
            s.update(summarise(s["runs"]))
            s["targets"] = targets(plant, s)
            out.write_text(json.dumps(result, indent=2))
        print_plant(plant, s, s["targets"])
        print("\n" + markdown(plant, s))
    result.setdefault("added", []).append(
        {"ablations": ablations, "plants": plants, "seeds": seeds, "machine_info": machine_info()}
    )
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


def _outside_simulator():
    """The outside plant's simulator module (it lives with its test, not in the package)."""
    mod_spec = importlib.util.spec_from_file_location("outside_simulate", OUTSIDE / "simulate.py")
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def run_outside(seed: int, hours: float) -> dict:
    """The outside plant end to end as a user runs it: CSV -> import -> default training."""
    sim = _outside_simulator()
    spec = load_spec(str(OUTSIDE / "plant.toml"))
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.at(Path(tmp))
        csv = sim.write_csv(Path(tmp) / "history.csv", hours, seed)
        with Historian(home.historian_dir(spec.name)) as hist:
            import_file(hist, spec, csv)
        model_cfg, data_cfg, cfg = train_configs(device="cpu", seed=seed)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        version = train_plant(home, spec, model_cfg, data_cfg, replace(cfg, progress=False))
        wall = time.perf_counter() - t0
        card = registry.load_checkpoint(home, spec, version)["card"]
        tw = registry.load_active(home, spec)
    held = sim.simulate(HOLD_HOURS, seed + 100, excite=False)
    rows = held.reindex(columns=spec.tag_names).to_numpy()
    still = flagged(tw, rows, np.arange(tw.window - 1, len(rows), spec.plant.samples_per_interval))
    ev, tr = card["evaluation"], card["training"]
    return {
        "seed": seed,
        "nrmse": {m: r["nrmse"] for m, r in ev["models"].items()},
        "bands": ev["bands"],
        "ood": ev["ood"] | {"held_still_false_alarm": float(still.mean())},
        "monitors": ev["monitors"],
        "held_still_windows": int(len(still)),
        "train_seconds": tr["seconds"],
        "stopped": tr["stopped"],
        "capped": tr["capped"],
        "obs_model_stopped": tr["obs_model_stopped"],
        "total_seconds": round(wall, 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "configs": {"data": card["data"]["config"], "train": tr["train_config"]},
    }


def outside(seeds: list[int], hours: float, out: Path, combine: list[Path] | None) -> None:
    """Run (or, with combine, merge the runs of separate result files) and summarise."""
    runs = []
    for path in combine or []:
        runs += json.loads(path.read_text())["runs"]
    for seed in [] if combine else seeds:
        runs.append(run_outside(seed, hours))
        print(f"outside seed {seed}: {runs[-1]['nrmse']} ({runs[-1]['stopped']})", flush=True)
    seeds = [r["seed"] for r in runs]
    table = {
        m: {h: interval([r["nrmse"][m][h] for r in runs]) for h in map(str, HORIZONS)}
        for m in runs[0]["nrmse"]
    }
    checks = {}
    for h in map(str, HORIZONS):
        for rival in ("arx", "persistence"):
            worst = max(r["nrmse"]["jepa"][h] / r["nrmse"][rival][h] for r in runs)
            checks[f"jepa/{rival} h{h} < 1 (worst seed)"] = worst
        checks[f"5-95 coverage h{h} in [0.85, 0.95]"] = float(
            np.mean([r["bands"]["coverage_mean"][h] for r in runs])
        )
    checks["held still 1 h: refusals == 0 (all seeds)"] = float(
        sum(r["ood"]["held_still_false_alarm"] for r in runs)
    )
    result = {
        "plant": "heated_tank (tests/model/outside_plant, defined outside plants/)",
        "hours": hours,
        "seeds": seeds,
        "recipe": "twin train defaults (twin.train_presets.train_configs), progress bars off",
        "machine": "2 CPU cores shared with other work, torch with 1 thread",
        "machine_info": machine_info(),
        "nrmse": table,
        "targets": checks,
        "runs": runs,
    }
    print("\noutside plant: NRMSE on the held-out 20 % (mean +- 95 % interval over seeds)")
    for m, t in table.items():
        cells = [f"{t[h]['mean']:.4f} +- {t[h]['ci95']:.4f}" for h in map(str, HORIZONS)]
        print(f"{m:20s}" + "".join(f"{c:>18s}" for c in cells))
    for k, v in checks.items():
        print(f"  {k}: {v:.3f}")
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


def interval(vals: list[float]) -> dict:
    """Mean and 95 % t-interval half-width over seeds."""
    v = np.asarray(vals, float)
    half = (
        float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
        if len(v) > 1
        else float("nan")
    )
    return {"mean": float(v.mean()), "ci95": half, "std": float(v.std()), "seeds": v.tolist()}


def summarise(runs: list[dict]) -> dict:
    models = dict.fromkeys(m for r in runs for m in r["nrmse"])
    table = {}
    for m in models:
        table[m] = {}
        for h in map(str, HORIZONS):
            vals = [r["nrmse"].get(m, {}).get(h) for r in runs]
            vals = [v for v in vals if v is not None]
            table[m][h] = interval(vals) if vals else None
    mon = {}
    for k in (
        "sigreg_train",
        "sigreg_heldout",
        "effective_rank",
        "min_dim_std",
        "readout_nrmse_now",
        "ood_threshold",
        "ood_fraction_above",
        "sigreg_gaussian_floor",
    ):
        vals = [r["monitors"][k] for r in runs if r["monitors"].get(k) is not None]
        mon[k] = interval(vals)
    for h in ("5", "10"):
        mon[f"action_usage_h{h}"] = interval([r["monitors"]["action_usage"][h] for r in runs])
    coverage = {
        h: interval([r["bands"]["coverage_mean"][h] for r in runs]) for h in map(str, HORIZONS)
    }
    pinball = {
        h: interval([r["bands"]["pinball_mean"][h] for r in runs]) for h in map(str, HORIZONS)
    }
    ood = gate_summary([r["ood"] for r in runs])
    secs = [r["train_seconds"] for r in runs]
    totals = [r["total_seconds"] for r in runs]
    previous = [r["ood_previous"] for r in runs if "ood_previous" in r]
    return {
        "nrmse": table,
        "monitors": mon,
        "coverage_5_95": coverage,
        "pinball": pinball,
        "ood": ood,
        **({"ood_previous": gate_summary(previous)} if len(previous) == len(runs) else {}),
        "train_seconds": {"mean": float(np.mean(secs)), "max": float(np.max(secs)), "seeds": secs},
        "total_train_seconds": {"max": float(np.max(totals)), "seeds": totals},
    }


def gate_summary(oods: list[dict]) -> dict:
    """The OOD gate's rates over seeds (one ood dict per seed), mean and 95 % interval
    (false_alarm_inside_range only where every seed has it: files from before it lack it)."""
    keys = (
        "false_alarm",
        "false_alarm_inside_range",
        "held_still_false_alarm",
        "unexcited_region_detection",
        "unmeasured_disturbance_detection",
    )
    keys = tuple(k for k in keys if all(k in o for o in oods))
    return {k: interval([o[k] for o in oods]) for k in keys} | {
        f"{k}_detection": interval([o["detection"][k] for o in oods]) for k in oods[0]["detection"]
    }


def gate_per_seed(plant: str, runs: list[dict]) -> None:
    """One line per seed: false alarms (before -> now when the file kept the earlier gate),
    refusals held still, the worst detection of any fault."""
    for r in runs:
        o = r["ood"]
        dets = {k: v for k, v in o.items() if k.endswith("_detection")} | o["detection"]
        at = ", ".join(
            f"{float(k):.1%}: {v['false_alarm']:.2%}"
            for k, v in r.get("false_alarm_at_rate", {}).items()
        )
        if at:
            print(f"{plant} seed {r['seed']}: held-out false alarms with the gate refit for {at}")
        was = r.get("ood_previous")
        before = f"{was['false_alarm']:.2%} -> " if was else ""
        print(
            f"{plant} seed {r['seed']}: false alarms {before}{o['false_alarm']:.2%} of "
            f"{o['windows']} in {o['false_alarm_episodes']} runs (target "
            f"{o['false_alarm_target']:.2%}; {o['false_alarm_inside_range']:.2%} of the "
            f"{o['windows'] - o['windows_outside_range']} inside the training range), held still "
            f"{o['held_still_false_alarm']:.2%} of {o['held_still_windows']}, detection "
            + ", ".join(f"{k.removesuffix('_detection')} {v:.0%}" for k, v in dets.items())
        )


def targets(plant: str, s: dict) -> dict:
    n = {m: {h: v["mean"] for h, v in t.items() if v} for m, t in s["nrmse"].items()}
    out = {}
    if plant == "cstr":
        for h in ("5", "10"):
            classic = min(n["persistence"][h], n["arx"][h])
            out[f"jepa/min(persistence,arx) h{h} <= 0.8"] = n["jepa"][h] / classic
        for h in ("1", "5", "10"):
            out[f"jepa/observation_model h{h} <= 1.0"] = n["jepa"][h] / n["observation_model"][h]
    else:
        for h in map(str, HORIZONS):
            best = min(n[m][h] for m in ("persistence", "arx", "observation_model"))
            out[f"jepa/best_baseline h{h} <= 1.05"] = n["jepa"][h] / best
    for h in ("5", "10"):
        out[f"action_usage h{h} >= 2"] = s["monitors"][f"action_usage_h{h}"]["mean"]
    for h in map(str, HORIZONS):
        out[f"jepa/observation_model (equal size) h{h} < 1"] = (
            n["jepa"][h] / n["observation_model"][h]
        )
        if "ablation:probe" in n:
            out[f"jepa/probe h{h} < 1"] = n["jepa"][h] / n["ablation:probe"][h]
        if h in ("10", "30") and "ablation:latent_losses_off" in n:
            out[f"jepa/latent_losses_off h{h} < 1"] = (
                n["jepa"][h] / n["ablation:latent_losses_off"][h]
            )
        out[f"5-95 coverage h{h} in [0.85, 0.95]"] = s["coverage_5_95"][h]["mean"]
    out[f"ood false alarm (held-out) <= {FALSE_ALARM_LIMIT}"] = s["ood"]["false_alarm"]["mean"]
    out[f"ood false alarm (held-out, worst seed) <= {FALSE_ALARM_LIMIT}"] = max(
        s["ood"]["false_alarm"]["seeds"]
    )
    out["ood false alarm (held still 1 h) == 0"] = s["ood"]["held_still_false_alarm"]["mean"]
    for k, v in s["ood"].items():
        if k.endswith("detection"):
            out[f"{k} >= 0.9"] = v["mean"]
    out["sigreg_heldout / gaussian floor <= 10"] = (
        s["monitors"]["sigreg_heldout"]["mean"] / s["monitors"]["sigreg_gaussian_floor"]["mean"]
    )
    out["max train seconds (JEPA) <= 180"] = s["train_seconds"]["max"]
    out["max train seconds (JEPA + baselines + evaluation)"] = s["total_train_seconds"]["max"]
    return out


def print_plant(plant: str, s: dict, checks: dict) -> None:
    hs = list(map(str, HORIZONS))
    print(f"\n{plant}: NRMSE on the held-out 20 % (mean +- 95 % interval over seeds)")
    print(f"{'model':34s}" + "".join(f"{'h' + h:>18s}" for h in hs))
    for m, t in s["nrmse"].items():
        cells = [f"{t[h]['mean']:.4f} +- {t[h]['ci95']:.4f}" if t.get(h) else "-" for h in hs]
        print(f"{m:34s}" + "".join(f"{c:>18s}" for c in cells))
    for name, key in (("5-95 coverage", "coverage_5_95"), ("pinball", "pinball")):
        cells = [f"{s[key][h]['mean']:.3f} +- {s[key][h]['ci95']:.3f}" for h in hs]
        print(f"{name:34s}" + "".join(f"{c:>18s}" for c in cells))
    print("OOD gate: " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in s["ood"].items()))
    print("monitors: " + ", ".join(f"{k} {v['mean']:.3g}" for k, v in s["monitors"].items()))
    print(f"JEPA training seconds per seed: {s['train_seconds']['seeds']}")
    for k, v in checks.items():
        print(f"  {k}: {v:.3f}")


def markdown(plant: str, s: dict) -> str:
    """The plant's tables as markdown (for the README)."""
    hs = list(map(str, HORIZONS))
    n = len(s["runs"]) if "runs" in s else 0
    lines = [
        f"**{plant}** ({n} seeds): held-out NRMSE, mean ± 95 % interval",
        "",
        "| model | " + " | ".join(f"h{h}" for h in hs) + " |",
        "| --- |" + " --- |" * len(hs),
    ]
    for m, t in s["nrmse"].items():
        cells = [f"{t[h]['mean']:.3f} ± {t[h]['ci95']:.3f}" if t.get(h) else "-" for h in hs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for name, key in (("5-95 % band coverage", "coverage_5_95"), ("pinball (CV std)", "pinball")):
        cells = [f"{s[key][h]['mean']:.3f} ± {s[key][h]['ci95']:.3f}" for h in hs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| OOD gate | mean ± 95 % interval |", "| --- | --- |"]
    for k, v in s["ood"].items():
        lines.append(f"| {k} | {v['mean']:.3f} ± {v['ci95']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plants", nargs="+", default=["cstr", "four_tank"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=None, help="Most epochs (smoke runs only).")
    ap.add_argument("--cache", type=Path, default=None, help="Save each full twin here.")
    ap.add_argument("--ablations", nargs="*", default=list(ABLATIONS), choices=list(ABLATIONS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        default=None,
        help="Merge result files of separate runs (e.g. one per plant) into --out.",
    )
    ap.add_argument(
        "--regate",
        type=Path,
        default=None,
        help="With --cache: refit and re-measure the OOD gate and bands of the cached twins of this result file.",
    )
    ap.add_argument(
        "--gate-rates",
        nargs="*",
        type=float,
        default=[],
        help="With --regate: also the held-out false alarms of the gate refit at these design "
        "rates (the shipped rate is measured in full either way).",
    )
    ap.add_argument(
        "--add-ablations",
        type=Path,
        default=None,
        help="Train --ablations for the --plants and --seeds of this result file (same data and "
        "rules) and add them to its runs; writes --out. The full twins are not retrained.",
    )
    ap.add_argument(
        "--previous-gate",
        action="store_true",
        help="Also measure each twin's gate with one global consistency scale (ood_previous).",
    )
    ap.add_argument(
        "--outside",
        action="store_true",
        help="The plant defined outside the repository (12 h of CSV, default recipe).",
    )
    args = ap.parse_args()
    if args.outside:
        out = OUTSIDE_RESULTS if args.out == RESULTS else args.out
        outside(args.seeds, 12.0 if args.hours == 6.0 else args.hours, out, args.combine)
        return
    if args.regate:
        result = json.loads(args.regate.read_text())
        remeasure_gates(
            result, args.cache, result["hours"], tuple(args.gate_rates), args.previous_gate
        )
        result["remeasured"] = (
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: OOD gate and band calibration refit on the "
            "cached twins of this file (same weights, same data); NRMSE and timings unchanged"
        )
        result["remeasured_machine"] = machine_info()
        for plant, s in result["plants"].items():
            print_plant(plant, s, s["targets"])
            gate_per_seed(plant, s["runs"])
        args.out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
        return
    if args.add_ablations:
        add_ablations(args.add_ablations, args.out, args.plants, args.seeds, args.ablations)
        return
    if args.combine:
        merged = json.loads(args.combine[0].read_text())
        for extra in args.combine[1:]:
            other = json.loads(extra.read_text())
            merged["seeds"] = sorted(set(merged["seeds"]) | set(other["seeds"]))
            for plant, s in other["plants"].items():
                if plant in merged["plants"]:  # runs of more seeds of the same plant
                    s = {"runs": merged["plants"][plant]["runs"] + s["runs"]}
                merged["plants"][plant] = s
        for plant, s in merged["plants"].items():
            s.update(summarise(s["runs"]))
            s["targets"] = targets(plant, s)
        for plant, s in merged["plants"].items():
            print_plant(plant, s, s["targets"])
            print("\n" + markdown(plant, s))
        args.out.write_text(json.dumps(merged, indent=2))
        print(f"\nwrote {args.out}")
        return
    result = {
        "hours": args.hours,
        "seeds": args.seeds,
        "horizons": list(HORIZONS),
        "machine": "2 CPU cores shared with other work, torch with 1 thread",
        "machine_info": machine_info(),
        "ablations": ABLATIONS,
        "plants": {},
    }
    for plant in args.plants:
        runs = []
        for seed in args.seeds:
            r = run_one(
                plant,
                seed,
                args.hours,
                args.ablations,
                args.epochs,
                args.cache,
                args.previous_gate,
            )
            print(
                f"{plant} seed {seed}: jepa {r['nrmse']['jepa']}, train {r['train_seconds']} s "
                f"({r['stopped']})",
                flush=True,
            )
            runs.append(r)
        s = summarise(runs)
        checks = targets(plant, s)
        result["plants"][plant] = s | {"targets": checks, "runs": runs}
        print_plant(plant, s, checks)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
