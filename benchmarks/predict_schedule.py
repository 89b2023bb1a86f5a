"""Training-schedule diagnosis for issue 11: the full twin and its latent-losses-off ablation
fitted under one TrainConfig on the predict benchmark's data (6 h PRBS, same split), with the
validation curve, the learning rate and where early stopping fired, and the held-out NRMSE.

    python benchmarks/predict_schedule.py --plant cstr --seed 1 [--epochs 40] [--patience-after 0.5]

Prints one line per epoch and a summary; appends the summary to
benchmarks/results/predict_schedule.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from _machine import machine_info
from predict import make_series

from twin.evaluate import evaluate
from twin.model.config import ABLATIONS, ModelConfig
from twin.model.twin_model import TwinModel
from twin.spec import load_spec
from twin.train import TrainConfig, fit_jepa, torch_threads

RESULTS = Path(__file__).resolve().parent / "results" / "predict_schedule.json"


def fit_and_score(series, model_cfg: ModelConfig, cfg: TrainConfig, name: str) -> dict:
    fit = fit_jepa(series, model_cfg, cfg)
    roles = {t.name: t.role for t in series.spec.tags}
    tw = TwinModel(fit.module, series.normalizer, roles, series.window, series.spi, series.config)
    rep = evaluate(tw, series)
    best = min(fit.history, key=lambda r: r["val"])
    for r in fit.history:
        print(f"  {name} epoch {r['epoch']:3d} lr {r['lr']:.2e} val {r['val']:.4f}")
    out = {
        "variant": name,
        "nrmse": rep["models"]["jepa"]["nrmse"],
        "seconds": round(fit.seconds, 1),
        "steps": fit.steps,
        "stopped": fit.stopped,
        "best_epoch": best["epoch"],
        "best_val": best["val"],
        "lr_at_best": best["lr"],
        "sigreg_heldout": rep["monitors"]["sigreg_heldout"],
        "effective_rank": rep["monitors"]["effective_rank"],
        "load_1m": os.getloadavg()[0],
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plant", default="cstr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--patience-after", type=float, default=None)
    ap.add_argument("--variants", nargs="+", default=["full", "latent_losses_off"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    spec = load_spec(args.plant)
    series = make_series(spec, args.seed, args.hours)
    cfg = TrainConfig(seed=args.seed, progress=False)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    if args.patience_after is not None:
        cfg = replace(cfg, patience_after=args.patience_after)
    print(
        f"{args.plant} seed {args.seed}: {len(series.anchors('train', series.config.horizon))} "
        f"training windows, window {series.window}, {len(series.tag_names)} tags",
        flush=True,
    )
    rows = []
    t0 = time.perf_counter()
    with torch_threads(1):
        for v in args.variants:
            mc = ModelConfig() if v == "full" else replace(ModelConfig(), **ABLATIONS[v])  # type: ignore[arg-type]
            rows.append(fit_and_score(series, mc, cfg, v))
    rec = {
        "plant": args.plant,
        "seed": args.seed,
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "patience_after": cfg.patience_after,
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine_info": machine_info(),
        "variants": rows,
    }
    old = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps([*old, rec], indent=2))


if __name__ == "__main__":
    main()
