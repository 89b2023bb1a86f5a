"""Tennessee Eastman (tep): the twin on 41 tags against persistence, ARX and the equal-size
observation-space model.

Per seed: 48 simulated hours from `twin generate tep` (PRBS on the 9 supervisory setpoints in
their operating band, the spec's excitation), the last contiguous 20 % held out; the default
recipe (`twin train`'s configs), with each fit's wall-clock budget set by --max-seconds so that
a run finishes on a shared 2-core machine (how each fit ended is recorded). NRMSE on the
held-out block at 1, 5, 10 and 30 control intervals (0.1 h each). Optionally the
latent-losses-off ablation. Each trained twin is saved in the benchmark home, where
benchmarks/tep_control.py picks it up.

Means over seeds with a 95 % t-interval (helpers from benchmarks/predict.py).

    python benchmarks/tep_predict.py [--seeds 0 1 2] [--hours 48] [--max-seconds 240]
        [--ablations latent_losses_off]

Prints a table; writes benchmarks/results/tep_predict.json (after every seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine_info  # noqa: E402
from predict import interval, make_series  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from twin import registry  # noqa: E402
from twin.evaluate import HORIZONS  # noqa: E402
from twin.model.comparisons import ablation_report  # noqa: E402
from twin.paths import Home  # noqa: E402
from twin.spec import load_spec  # noqa: E402
from twin.train import torch_threads, train_series  # noqa: E402
from twin.train_presets import train_configs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tep_predict.json"
HOME = Path(os.environ.get("TWIN_BENCH_HOME", Path(tempfile.gettempdir()) / "twin-bench-tep"))
BASELINES = ("persistence", "arx", "observation_model")


def run_seed(seed: int, hours: float, max_seconds: float, ablations: list[str]) -> dict:
    spec = load_spec("tep")
    t0 = time.perf_counter()
    series = make_series(spec, seed, hours)
    gen_s = time.perf_counter() - t0
    model_cfg, _, cfg = train_configs(device="cpu", seed=seed, max_seconds=max_seconds)
    cfg = replace(cfg, progress=False)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = train_series(series, model_cfg, cfg)
    wall = time.perf_counter() - t0
    version = registry.save(Home.at(HOME), spec, out)
    with torch_threads(1):
        abl = {name: ablation_report(series, model_cfg, cfg, name) for name in ablations}
    info = out.train_info
    return {
        "seed": seed,
        "version": version,
        "nrmse": {m: r["nrmse"] for m, r in out.report["models"].items()}
        | {f"ablation:{k}": v["nrmse"] for k, v in abl.items()},
        "ablations": {
            k: {"seconds": v["seconds"], "stopped": v["stopped"]} for k, v in abl.items()
        },
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "latent_size": out.twin.net.latent_size,
        "readout_nrmse_now": out.report["monitors"]["readout_nrmse_now"],
        "nrmse_per_cv_h1": {
            m: r["nrmse_per_cv"]["1"]
            for m, r in out.report["models"].items()
            if "nrmse_per_cv" in r
        },
        "generate_seconds": round(gen_s, 1),
        "train_seconds": info["seconds"],
        "obs_model_seconds": info["obs_model_seconds"],
        "total_seconds": round(wall, 1),
        "steps": info["steps"],
        "stopped": info["stopped"],
        "obs_model_stopped": info["obs_model_stopped"],
        "params": info["params"],
        "anchors": out.report["anchors"],
        "effective_rank": out.report["monitors"].get("effective_rank"),
    }


def summarise(runs: list[dict]) -> dict:
    table: dict = {}
    for m in runs[0]["nrmse"]:
        table[m] = {}
        for h in map(str, HORIZONS):
            vals = [r["nrmse"][m].get(h) for r in runs if r["nrmse"][m].get(h) is not None]
            table[m][h] = interval(vals) if vals else None
    n = {m: {h: v["mean"] for h, v in t.items() if v} for m, t in table.items()}
    checks = {}
    for h in map(str, HORIZONS):
        for b in BASELINES:
            checks[f"jepa/{b} h{h} < 1"] = n["jepa"][h] / n[b][h]
        if h in ("10", "30") and "ablation:latent_losses_off" in n:
            checks[f"jepa/latent_losses_off h{h} < 1"] = (
                n["jepa"][h] / n["ablation:latent_losses_off"][h]
            )
    secs = [r["train_seconds"] for r in runs]
    checks["max train seconds (JEPA) <= 300"] = max(secs)
    return {
        "nrmse": table,
        "checks": checks,
        "train_seconds": interval(secs),
        "total_seconds": interval([r["total_seconds"] for r in runs]),
    }


def show(summary: dict, console: Console) -> None:
    t = Table(title="tep held-out NRMSE (mean ± 95 % CI over seeds)")
    t.add_column("model")
    for h in HORIZONS:
        t.add_column(f"h{h}", justify="right")
    for m, row in summary["nrmse"].items():
        t.add_row(m, *(f"{row[str(h)]['mean']:.3f} ± {row[str(h)]['ci95']:.3f}" for h in HORIZONS))
    console.print(t)
    for k, v in summary["checks"].items():
        console.print(f"  {k}: {v:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--max-seconds", type=float, default=240.0)
    ap.add_argument("--ablations", nargs="*", default=[])
    args = ap.parse_args()
    console = Console(width=140)
    result: dict = {
        "config": {
            "hours": args.hours,
            "excitation": "prbs, operating band",
            "recipe": "twin train defaults (twin.train_presets.train_configs)",
            "max_seconds_per_fit": args.max_seconds,
            "home": str(HOME),
            "load_average_at_start": os.getloadavg()[0],
            "machine": machine_info(),
        },
        "runs": [],
    }
    for seed in args.seeds:
        console.print(f"seed {seed}: generating {args.hours} h and training ...")
        run = run_seed(seed, args.hours, args.max_seconds, args.ablations)
        console.print(
            f"seed {seed}: jepa {run['train_seconds']} s ({run['stopped']}), "
            f"obs {run['obs_model_seconds']} s, h10 jepa {run['nrmse']['jepa']['10']:.3f}"
        )
        result["runs"].append(run)
        result["summary"] = summarise(result["runs"])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    show(result["summary"], console)
    console.print(f"saved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
