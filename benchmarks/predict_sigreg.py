"""Why the held-out SIGReg statistic sits far above the Gaussian level, and what moves it.

For one plant and data seed (6 h of PRBS, the predict benchmark's split), train the JEPA with
each variant of the latent objective (ModelConfig overrides, short runs) and report held-out
NRMSE at h1/h5/h10/h30 beside the latent monitors:

- sigreg: the held-out statistic exactly as `twin evaluate` computes it (1024 projections, at
  most 1024 latents of the held-out block);
- iid floor: the same estimator's expectation for independent N(0, I) samples of the same count
  (twin.model.sigreg.gaussian_floor), checked against randn draws through sigreg() itself;
- corr. floor: the same estimator on Gaussian surrogates of the held-out latents that keep their
  time correlation (whitened, then Fourier phase-randomised per dimension): what a latent whose
  every projection is exactly N(0, 1) would score on this block, whose neighbouring windows
  overlap and are not independent samples;
- whitened: the statistic of the held-out latents after their own mean and covariance are
  removed: the part of the gap that an affine map (location, scale, correlation) cannot close;
- train: the same statistic on training-block latents; eff. rank of the held-out latents.

    python benchmarks/predict_sigreg.py [--plant cstr] [--seeds 0] [--epochs 20] [--only NAME ...]

--epochs 0 trains by the full recipe (TrainConfig's epochs and early stopping). With several
seeds a summary (mean and 95 % t-interval over seeds) is printed and saved per variant.
Writes benchmarks/results/predict_sigreg.json (one entry per run, the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _machine import machine_info
from predict import interval, make_series

from twin.evaluate import MONITOR_PROJECTIONS, MONITOR_SAMPLES, evaluate, latents_of
from twin.model.config import ModelConfig
from twin.model.sigreg import (
    correlated_gaussian_level,
    gaussian_floor,
    gaussian_surrogate,
    sigreg,
    whiten,
)
from twin.model.twin_model import TwinModel
from twin.spec import load_spec
from twin.train import TrainConfig, fit_jepa, torch_threads

RESULTS = Path(__file__).resolve().parent / "results" / "predict_sigreg.json"

VARIANTS: dict[str, dict] = {
    "shipped (lambda 0.1)": {},
    "lambda 1": {"sigreg_lambda": 1.0},
    "lambda 5": {"sigreg_lambda": 5.0},
    "lambda 1, all pooled latents": {"sigreg_lambda": 1.0, "sigreg_samples": 4096},
    "lambda 1, no BatchNorm": {"sigreg_lambda": 1.0, "batchnorm": False},
    "lambda 1, target stop-grad": {"sigreg_lambda": 1.0, "target_stop_grad": True},
    "latent losses off": {"w_pred": 0.0, "w_rollout": 0.0},
    "lambda 20": {"sigreg_lambda": 20.0},
    "latent 8, lambda 0.1": {"latent_dim": 8},
    "latent 8, lambda 1": {"latent_dim": 8, "sigreg_lambda": 1.0},
    "latent 8, lambda 5": {"latent_dim": 8, "sigreg_lambda": 5.0},
    "latent 16, lambda 5": {"latent_dim": 16, "sigreg_lambda": 5.0},
    "lambda 50": {"sigreg_lambda": 50.0},
    "lambda 20, target stop-grad": {"sigreg_lambda": 20.0, "target_stop_grad": True},
    "lambda 20, latent losses off": {"sigreg_lambda": 20.0, "w_pred": 0.0, "w_rollout": 0.0},
    "lambda 10, target stop-grad": {"sigreg_lambda": 10.0, "target_stop_grad": True},
    "lambda 20, target stop-grad, readout x3": {
        "sigreg_lambda": 20.0,
        "target_stop_grad": True,
        "w_readout": 3.0,
    },
    "lambda 5, target stop-grad": {"sigreg_lambda": 5.0, "target_stop_grad": True},
}


def stat(z: torch.Tensor, seed: int = 0) -> float:
    """The held-out statistic of twin.evaluate: same projections, samples and generator seed."""
    gen = torch.Generator().manual_seed(seed)
    return float(sigreg(z, MONITOR_PROJECTIONS, MONITOR_SAMPLES, gen))


def references(z_held: torch.Tensor, draws: int = 5) -> dict:
    """The Gaussian levels the held-out statistic is compared with (same estimator, same n)."""
    n, d = z_held.shape
    rng = np.random.default_rng(0)
    iid = [stat(torch.from_numpy(rng.standard_normal((n, d))).float(), k) for k in range(draws)]
    u = whiten(z_held.numpy().astype(float))
    sur = [gaussian_surrogate(u, rng) for _ in range(draws)]
    corr_white = [stat(torch.from_numpy(whiten(g)).float(), k) for k, g in enumerate(sur)]
    return {
        "iid_floor": gaussian_floor(min(n, MONITOR_SAMPLES)),
        "iid_randn": float(np.mean(iid)),
        "corr_floor": correlated_gaussian_level(
            z_held, MONITOR_PROJECTIONS, MONITOR_SAMPLES, draws
        ),
        "whitened": stat(torch.from_numpy(u).float()),
        "corr_floor_whitened": float(np.mean(corr_white)),
        "samples": int(min(n, MONITOR_SAMPLES)),
    }


def run_variant(series, overrides: dict, seed: int, epochs: int) -> dict:
    cfg = TrainConfig(seed=seed, progress=False)
    cfg = replace(cfg, epochs=epochs) if epochs else cfg
    model_cfg = replace(ModelConfig(), **overrides)
    t0 = time.perf_counter()
    with torch_threads(1):
        fit = fit_jepa(series, model_cfg, cfg)
    seconds = time.perf_counter() - t0
    roles = {t.name: t.role for t in series.spec.tags}
    tw = TwinModel(
        fit.module.cpu(), series.normalizer, roles, series.window, series.spi, series.config
    )
    with torch_threads(1):
        rep = evaluate(tw, series)
        z_held = latents_of(tw, series, "test")
    mon = rep["monitors"]
    ref = references(z_held)
    return {
        "overrides": overrides,
        "nrmse": rep["models"]["jepa"]["nrmse"],
        "sigreg_heldout": mon["sigreg_heldout"],
        "sigreg_train": mon["sigreg_train"],
        "effective_rank": mon["effective_rank"],
        **ref,
        "x_iid_floor": mon["sigreg_heldout"] / ref["iid_floor"],
        "x_corr_floor": mon["sigreg_heldout"] / ref["corr_floor"],
        "seconds": round(seconds, 1),
        "epochs": len(fit.history),
        "stopped": fit.stopped,
        "load_1m": os.getloadavg()[0],
    }


def print_row(name: str, r: dict) -> None:
    n = r["nrmse"]
    print(
        f"{name:34s} {n['1']:.3f} {n['5']:.3f} {n['10']:.3f} {n['30']:.3f} | "
        f"sig {r['sigreg_heldout']:.4f} ({r['x_iid_floor']:.0f}x iid, {r['x_corr_floor']:.1f}x corr) "
        f"white {r['whitened']:.4f} train {r['sigreg_train']:.4f} rank {r['effective_rank']:.1f} | "
        f"{r['seconds']:.0f} s, {r['epochs']} ep, load {r['load_1m']:.1f}",
        flush=True,
    )


SUMMARY_KEYS = ("sigreg_heldout", "x_iid_floor", "x_corr_floor", "effective_rank", "seconds")


def summarise(runs: list[dict]) -> dict:
    """Mean and 95 % t-interval over seeds of every figure of a variant."""
    out = {"nrmse": {h: interval([r["nrmse"][h] for r in runs]) for h in runs[0]["nrmse"]}}
    return out | {k: interval([r[k] for r in runs]) for k in SUMMARY_KEYS} | {"seeds": len(runs)}


def print_summary(name: str, s: dict) -> None:
    n = s["nrmse"]
    cells = " ".join(f"{n[h]['mean']:.3f}+-{n[h]['ci95']:.3f}" for h in ("1", "5", "10", "30"))
    print(
        f"{name:34s} {cells} | sig {s['sigreg_heldout']['mean']:.4f}+-"
        f"{s['sigreg_heldout']['ci95']:.4f} ({s['x_iid_floor']['mean']:.0f}x iid, "
        f"{s['x_corr_floor']['mean']:.1f}x corr) rank {s['effective_rank']['mean']:.1f} | "
        f"{s['seconds']['mean']:.0f} s ({s['seeds']} seeds)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plant", default="cstr")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=20, help="0: the full recipe")
    ap.add_argument("--only", nargs="*", default=None, help="Variant names to run.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    spec = load_spec(args.plant)
    names = [n for n in VARIANTS if not args.only or n in args.only]
    print(f"{'variant':34s} h1    h5    h10   h30   | latent monitors (held-out)")
    for seed in args.seeds:
        series = make_series(spec, seed, args.hours)
        for name in names:
            key = f"{args.plant}/seed{seed}/epochs{args.epochs or 'full'}"
            done = json.loads(args.out.read_text())["runs"] if args.out.exists() else {}
            if name in done.get(key, {}):  # measured before: kept, not retrained
                print_row(f"{name} [{seed}, kept]", done[key][name])
                continue
            r = run_variant(series, VARIANTS[name], seed, args.epochs)
            print_row(f"{name} [{seed}]", r)
            # Re-read before writing: other runs of this script may share the file.
            result = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
            result["runs"].setdefault(key, {})[name] = r
            result["machine"] = machine_info()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
    if len(args.seeds) > 1:
        result = json.loads(args.out.read_text())
        summary = result.setdefault("summary", {})
        epochs = args.epochs or "full"
        for name in names:
            runs = [
                result["runs"][f"{args.plant}/seed{s}/epochs{epochs}"][name] for s in args.seeds
            ]
            key = f"{args.plant}/epochs{epochs}/seeds{'-'.join(map(str, args.seeds))}"
            summary.setdefault(key, {})[name] = summarise(runs)
            print_summary(name, summary[key][name])
        args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
