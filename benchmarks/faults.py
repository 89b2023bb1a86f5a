"""Fault-injection benchmark: every case of tests/faults x N repetitions against real servers.

Each repetition runs a real `twin serve --mode auto` against the faults suite's plant server
(OPC-UA, 10x plant speed), injects the case's fault and judges the plant's own MV log and the
state store (tests/faults/verdict.py). Per case: repetitions, unsafe writes (must be 0),
partial moves left unreconciled (must be 0), alarms raised where the case calls for one
(must equal the repetitions), writes resumed after the fault, samples lost.

    python benchmarks/faults.py [--repeats N] [--case NAME ...]

Prints a table and writes benchmarks/results/faults.json after every case (a case's rows replace
that case's earlier rows; the file is locked while it is merged, so several runs on disjoint
cases may share it, and a long run that is stopped keeps the cases it finished).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _machine import machine_info  # noqa: E402

from tests.faults import mixer  # noqa: E402
from tests.faults.cases import CASES, SPEED, run_case  # noqa: E402
from tests.faults.procs import train_tiny  # noqa: E402


def _commit() -> str:
    run = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )  # noqa: S603,S607
    return run.stdout.strip()


def summarise(name: str, runs: list[dict]) -> dict:
    case = CASES[name]
    expects_alarm = bool(case.alarms)
    return {
        "case": name,
        "repetitions": len(runs),
        "unsafe_writes": sum(r["unsafe_writes"] for r in runs),
        "partial_moves_unreconciled": sum(r["partial_unreconciled"] for r in runs),
        "alarms_expected": len(runs) if expects_alarm else 0,
        "alarms_raised": sum(1 for r in runs if expects_alarm and r["alarm_ok"]),
        "false_alarms": sum(len(r["false_alarms"]) for r in runs),
        "resumed": sum(1 for r in runs if r["resumed"]),
        "samples_published": sum(r["samples_published"] for r in runs),
        "samples_lost": sum(r["samples_lost"] for r in runs),
        "passed": sum(1 for r in runs if not r["problems"] and not r.get("error")),
        "problems": sorted(
            {p for r in runs for p in r["problems"]} | {r["error"] for r in runs if r.get("error")}
        ),
        "runs": runs,
    }


OUT = ROOT / "benchmarks" / "results" / "faults.json"
TOTALS = (
    "unsafe_writes",
    "partial_moves_unreconciled",
    "alarms_expected",
    "alarms_raised",
    "samples_lost",
)


def save_case(row: dict, repeats: int) -> list[dict]:
    """Merge one case's summary into the results file (under a lock); returns all cases."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = []
        if OUT.exists():
            kept = [c for c in json.loads(OUT.read_text())["cases"] if c["case"] != row["case"]]
        rows = sorted([*kept, row], key=lambda c: list(CASES).index(c["case"]))
        data = {
            "speed": SPEED,
            "repeats": repeats,
            "totals": {k: sum(c[k] for c in rows) for k in TOTALS},
            "cases": rows,
        }
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(OUT)
    return rows


def run_repetition(name: str, tmp: Path, models: Path) -> dict:
    t0 = time.monotonic()
    try:
        r = run_case(CASES[name], tmp, models).to_dict()
    except Exception as exc:  # the case could not be exercised: reported, not hidden
        r = {
            "unsafe_writes": 0,
            "partial_unreconciled": 0,
            "alarm_ok": False,
            "false_alarms": [],
            "resumed": False,
            "samples_published": 0,
            "samples_lost": 0,
            "problems": [],
            "error": (str(exc).splitlines() or [type(exc).__name__])[0],
        }
    r["wall_s"] = round(time.monotonic() - t0, 1)
    return r


def print_table(rows: list[dict], repeats: int) -> None:
    table = Table(title=f"fault injection, {repeats} repetition(s) per case, plant at {SPEED:g}x")
    for col in (
        "case",
        "reps",
        "unsafe",
        "partial",
        "alarms",
        "resumed",
        "lost/published",
        "passed",
    ):
        table.add_column(col, justify="left" if col == "case" else "right")
    for s in rows:
        table.add_row(
            s["case"],
            str(s["repetitions"]),
            str(s["unsafe_writes"]),
            str(s["partial_moves_unreconciled"]),
            f"{s['alarms_raised']}/{s['alarms_expected']}",
            f"{s['resumed']}/{s['repetitions']}",
            f"{s['samples_lost']}/{s['samples_published']}",
            f"{s['passed']}/{s['repetitions']}",
        )
    Console().print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--case", action="append", choices=list(CASES))
    args = ap.parse_args()
    names = args.case or list(CASES)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="faults-bench-") as tmp_s:
        tmp = Path(tmp_s)
        spec = mixer.write_plant(tmp / "train" / "plant", "opc.tcp://127.0.0.1:4840/twin/")
        models = train_tiny(tmp / "train" / "home", spec)
        for name in names:
            runs = []
            for rep in range(args.repeats):
                r = run_repetition(name, tmp / f"{name}-{rep}", models)
                runs.append(r)
                print(f"{name} #{rep}: {r['problems'] or r.get('error') or 'ok'}", flush=True)
            row = summarise(name, runs) | {"commit": _commit(), "machine": machine_info()}
            rows = save_case(row, args.repeats)
    print_table(rows, args.repeats)
    print(f"saved {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
