"""Property run of the pure write guard (`twin.guard.check_write`) at 100,000 generated cases.

Each case draws live samples (each tag its own age and quality, so one stale or bad tag among
fresh ones is common), an approval near the live MV values or anywhere (NaN and inf included),
narrowed operator limits and a proposal expiry, and asks the guard. Every write it allows is
checked against an independent statement of the rules; the table counts the allowed writes that
break one. The CI test (tests/runtime/test_guard.py) runs a few hundred such cases.

    python benchmarks/guard_property.py [--cases N] [--seed S]

Prints a table and writes benchmarks/results/guard_property.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.guard import check_write, effective_limits  # noqa: E402
from twin.sample import Quality, Sample  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RULES = ("engineering_limits", "operator_limits", "max_move", "staleness", "expiry")
RULE3 = "cv_or_mv_sample_not_good"
"""Safety rule 3 (every CV and MV present, good, finite, in range), reported beside the others."""


def draw_case(spec: PlantSpec, rng: np.random.Generator) -> dict:
    limit = spec.safety.max_staleness_s
    live_mv = {t.name: rng.uniform(t.limits[0] - 1, t.limits[1] + 1) for t in spec.mvs}
    live: dict[str, Sample] = {}
    odd_age = rng.choice(spec.tag_names) if rng.random() < 0.3 else None
    odd_quality = rng.choice(spec.tag_names) if rng.random() < 0.2 else None
    for t in spec.tags:
        value = live_mv.get(t.name, rng.uniform(*t.limits))
        age = rng.uniform(0, limit) if t.name != odd_age else rng.uniform(0, 3 * limit)
        quality = Quality.GOOD
        if t.name == odd_quality:
            kind = rng.integers(0, 3)
            quality = Quality(int(rng.integers(1, 5))) if kind == 0 else Quality.GOOD
            value = float("nan") if kind == 1 else value
            value = t.limits[1] + abs(rng.normal()) + 1.0 if kind == 2 else value
        live[t.name] = Sample(NOW - timedelta(seconds=age), t.name, value, quality)
    if rng.random() < 0.75:
        approved = {
            t.name: live_mv[t.name] + rng.uniform(-1.5, 1.5) * (t.max_move or 1.0) for t in spec.mvs
        }
    else:
        approved = {t.name: _wild(t, rng) for t in spec.mvs}
    proposed = approved if rng.random() < 0.8 else {t.name: _wild(t, rng) for t in spec.mvs}
    overrides = {}
    for t in spec.mvs:
        if rng.random() < 0.4:
            lo, hi = sorted(rng.uniform(*t.limits, size=2))
            overrides[t.name] = (float(lo), float(hi))
    ttl = rng.uniform(1, 60) if rng.random() < 0.8 else rng.uniform(-60, 0)
    return {
        "live": live,
        "approved": approved,
        "proposed": proposed,
        "overrides": overrides,
        "expires_at": NOW + timedelta(seconds=ttl),
    }


def _wild(tag, rng: np.random.Generator) -> float:
    if rng.random() < 0.1:
        return float(rng.choice([math.nan, math.inf, -math.inf]))
    span = tag.limits[1] - tag.limits[0]
    return float(rng.uniform(tag.limits[0] - 0.2 * span, tag.limits[1] + 0.2 * span))


def broken_rules(spec: PlantSpec, case: dict, values: dict[str, float]) -> list[str]:
    """The rules an allowed write breaks, stated independently of the guard's code."""
    out = []
    live = case["live"]
    for tag, v in values.items():
        t = spec.tag(tag)
        if not (math.isfinite(v) and t.limits[0] - 1e-6 <= v <= t.limits[1] + 1e-6):
            out.append("engineering_limits")
        lo, hi = effective_limits(spec, tag, case["overrides"])
        if not lo - 1e-6 <= v <= hi + 1e-6:
            out.append("operator_limits")
        s = live[tag]
        if t.max_move is not None and not abs(v - s.value) <= t.max_move + 1e-6:
            out.append("max_move")
    if any((NOW - s.ts).total_seconds() > spec.safety.max_staleness_s for s in live.values()):
        out.append("staleness")
    if NOW > case["expires_at"]:
        out.append("expiry")
    for t in [*spec.cvs, *spec.mvs]:
        s = live[t.name]
        in_range = t.limits[0] <= s.value <= t.limits[1] if math.isfinite(s.value) else False
        if s.quality != Quality.GOOD or not in_range:
            out.append(RULE3)
            break
    return sorted(set(out))


def run(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    specs = [load_spec("cstr"), load_spec("four_tank")]
    counts = {r: 0 for r in (*RULES, RULE3)}
    allowed = 0
    examples: dict[str, str] = {}
    t0 = time.perf_counter()
    for i in range(n):
        spec = specs[i % len(specs)]
        case = draw_case(spec, rng)
        d = check_write(
            spec,
            approved=case["approved"],
            proposed=case["proposed"],
            live=case["live"],
            now=NOW,
            expires_at=case["expires_at"],
            operator_limits=case["overrides"],
        )
        if not d.allowed:
            continue
        allowed += 1
        for rule in broken_rules(spec, case, d.values):
            counts[rule] += 1
            examples.setdefault(
                rule,
                f"{spec.name}: {d.values} live { {k: (s.value, s.quality.name) for k, s in case['live'].items()} }",
            )
    return {
        "cases": n,
        "seed": seed,
        "allowed": allowed,
        "refused": n - allowed,
        "violations": {r: counts[r] for r in RULES},
        "violations_total": sum(counts[r] for r in RULES),
        "rule3_allowed_with_a_cv_or_mv_not_good": counts[RULE3],
        "examples": examples,
        "wall_s": round(time.perf_counter() - t0, 2),
        "plants": [s.name for s in specs],
        "commit": _commit(),
    }


def _commit() -> str:
    """The code measured (dirty: uncommitted changes in the working tree were measured too)."""
    git = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    return subprocess.run(git, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = run(args.cases, args.seed)
    table = Table(
        title=f"write guard, {res['cases']:,} generated cases ({res['allowed']:,} allowed)"
    )
    table.add_column("allowed write that breaks")
    table.add_column("count", justify="right")
    for rule, n in res["violations"].items():
        table.add_row(rule, str(n))
    table.add_row("total (must be 0)", str(res["violations_total"]))
    table.add_row(
        "rule 3: a CV/MV sample bad, NaN or out of range",
        str(res["rule3_allowed_with_a_cv_or_mv_not_good"]),
    )
    Console().print(table)
    out = ROOT / "benchmarks" / "results" / "guard_property.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
