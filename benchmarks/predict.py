"""Prediction benchmark of the JEPA twin against persistence, ARX and an observation-space model.

For each plant and data seed: 6 simulated hours from twin.generate with PRBS excitation, the
last contiguous 20 % held out; train the twin (and its baselines) on the rest; NRMSE at 1, 5,
10 and 30 control intervals on the held-out block. The floor is the true simulator started from
the true state at each anchor, under the recorded MVs, disturbances held at their last value,
scored against the same noisy measurements. Prints a table; writes benchmarks/results/predict.json.

    python benchmarks/predict.py [--plants cstr four_tank] [--seeds 0 1 2] [--hours 6]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from plants import load_plant_model
from plants.base import integrate
from twin.data import DataConfig, PlantSeries
from twin.evaluate import HORIZONS
from twin.generate import generate
from twin.model.config import ModelConfig
from twin.spec import load_spec
from twin.train import TrainConfig, train_series

RESULTS = Path(__file__).resolve().parent / "results" / "predict.json"
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


def run_one(plant: str, seed: int, hours: float) -> dict:
    spec = load_spec(plant)
    long = generate(spec, hours, "prbs", seed=seed, start=START, progress=False)
    good = long[long["quality"] == 0]
    wide = good.pivot(index="ts", columns="tag", values="value").reindex(columns=spec.tag_names)
    series = PlantSeries(wide, spec, DataConfig())
    t0 = time.perf_counter()
    out = train_series(series, ModelConfig(), TrainConfig(seed=seed, progress=False))
    wall = time.perf_counter() - t0
    grid = pd.DataFrame(series.raw, columns=spec.tag_names)
    states = true_states(spec, grid)
    floor = floor_nrmse(spec, series, grid, states)
    return {
        "seed": seed,
        "nrmse": {m: r["nrmse"] for m, r in out.report["models"].items()}
        | {"true_simulator_floor": floor},
        "monitors": out.report["monitors"],
        "train_seconds": out.train_info["seconds"],
        "obs_model_seconds": out.train_info["obs_model_seconds"],
        "total_seconds": round(wall, 1),
        "steps": out.train_info["steps"],
        "stopped": out.train_info["stopped"],
        "params": out.train_info["params"],
        "arx_orders": [out.arx.config.na, out.arx.config.nb],
        "anchors": out.report["anchors"],
    }


def summarise(runs: list[dict]) -> dict:
    models = runs[0]["nrmse"].keys()
    table = {}
    for m in models:
        table[m] = {}
        for h in map(str, HORIZONS):
            vals = [r["nrmse"][m].get(h) for r in runs]
            vals = [v for v in vals if v is not None]
            table[m][h] = (
                {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "seeds": vals}
                if vals
                else None
            )
    mon = {}
    for k in (
        "sigreg_train",
        "sigreg_heldout",
        "effective_rank",
        "min_dim_std",
        "readout_nrmse_now",
        "ood_threshold",
        "ood_fraction_above",
    ):
        vals = [r["monitors"][k] for r in runs if r["monitors"].get(k) is not None]
        mon[k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    for h in ("5", "10"):
        vals = [r["monitors"]["action_usage"][h] for r in runs]
        mon[f"action_usage_h{h}"] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    secs = [r["train_seconds"] for r in runs]
    return {
        "nrmse": table,
        "monitors": mon,
        "train_seconds": {"mean": float(np.mean(secs)), "max": float(np.max(secs)), "seeds": secs},
    }


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
    out["max train seconds <= 180"] = s["train_seconds"]["max"]
    return out


def print_plant(plant: str, s: dict, checks: dict) -> None:
    hs = list(map(str, HORIZONS))
    print(f"\n{plant}: NRMSE on the held-out 20 % (mean +- std over seeds)")
    print(f"{'model':24s}" + "".join(f"{'h' + h:>18s}" for h in hs))
    for m, t in s["nrmse"].items():
        cells = [f"{t[h]['mean']:.4f} +- {t[h]['std']:.4f}" if t.get(h) else "-" for h in hs]
        print(f"{m:24s}" + "".join(f"{c:>18s}" for c in cells))
    print("monitors: " + ", ".join(f"{k} {v['mean']:.3g}" for k, v in s["monitors"].items()))
    print(f"JEPA training seconds per seed: {s['train_seconds']['seeds']}")
    for k, v in checks.items():
        print(f"  {k}: {v:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plants", nargs="+", default=["cstr", "four_tank"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        default=None,
        help="Merge result files of separate runs (e.g. one per plant) into --out.",
    )
    args = ap.parse_args()
    if args.combine:
        merged = json.loads(args.combine[0].read_text())
        for extra in args.combine[1:]:
            merged["plants"].update(json.loads(extra.read_text())["plants"])
        for plant, s in merged["plants"].items():
            print_plant(plant, s, s["targets"])
        args.out.write_text(json.dumps(merged, indent=2))
        print(f"\nwrote {args.out}")
        return
    result = {
        "hours": args.hours,
        "seeds": args.seeds,
        "horizons": list(HORIZONS),
        "machine": "2 shared CPU cores, torch with 1 thread",
        "plants": {},
    }
    for plant in args.plants:
        runs = []
        for seed in args.seeds:
            r = run_one(plant, seed, args.hours)
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
