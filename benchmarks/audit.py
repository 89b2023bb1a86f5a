"""Audit benchmark: appends per second of the keyed, anchored log against the plain hash chain.

Run: python benchmarks/audit.py [--runs 5] [--entries 2000]
Prints a table and writes benchmarks/results/audit.json.

Each append is what the state store does for an audit entry on its own (`Store.log_event`):
one write transaction (`BEGIN IMMEDIATE` ... `COMMIT` on the store's WAL SQLite file) holding
one entry with a small `what`, the anchor line written after COMMIT. Three variants, each in a
fresh store of the same run, appended to in blocks (50 entries) that alternate between the
variants in a rotating order, so machine load falls on all alike:

- plain: the hash chain only (no key, no anchor) -- the log as it was before the key;
- hmac: + HMAC-SHA256 with the audit key;
- hmac+anchor: + the committed head appended to the anchor file (what a twin home does).

Rates are medians of --runs runs. The ratio to plain is the median, over every round of every
run, of plain's block time over the variant's block time in the same round (with its
interquartile range): on a shared, loaded machine a whole-run ratio mostly measures which
variant a burst of load fell on. CPU time per append (user + system) is also given: it does
not count time spent waiting for a core. Target: the keyed, anchored log at most 20 % slower
(ratio >= 0.80).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _machine import machine_info
from rich.console import Console
from rich.table import Table

from twin import audit
from twin.audit_keys import AuditFiles
from twin.state import Store

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
VARIANTS: dict[str, Callable[[Path], AuditFiles]] = {
    "plain": lambda home: AuditFiles(None, None),
    "hmac": lambda home: AuditFiles(home / "keys", None),
    "hmac+anchor": lambda home: AuditFiles(home / "keys", home / "audit.anchor"),
}


class _Log:
    """One variant's store, appended to block by block; each block's wall and CPU time kept."""

    def __init__(self, home: Path, files: AuditFiles) -> None:
        home.mkdir(parents=True)
        self.files = files
        self.store = Store(home / "state.db")
        self.n = 0
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def block(self, n: int) -> None:
        what = {"Tc": 301.5, "F": 0.98, "reason": "benchmark"}
        store, files = self.store, self.files
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            with store.write() as c:
                audit.append(
                    c,
                    user="bench",
                    kind="test",
                    plant="cstr",
                    subject=f"s:{i}",
                    what=what,
                    why="",
                    files=files,
                )
        self.wall.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        self.n += n

    def close(self) -> None:
        """The log must verify in full."""
        result = audit.verify(self.store, files=self.files)
        if not result.ok or result.entries != self.n:
            raise SystemExit(f"the {self.files} log did not verify: {result}")
        self.store.close()


def one_run(tmp: Path, run: int, entries: int, block: int) -> dict[str, _Log]:
    """Every variant's blocks; each round runs one block of every variant back to back, in an
    order that rotates from round to round, so load and WAL checkpoints fall on all alike."""
    logs = {
        name: _Log(tmp / f"{name}-{run}", files_of(tmp / f"{name}-{run}"))
        for name, files_of in VARIANTS.items()
    }
    names = list(logs)
    for r in range(entries // block):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            logs[name].block(block)
    for log in logs.values():
        log.close()
    return logs


def summarise(runs: list[dict[str, _Log]], block: int) -> dict[str, dict[str, Any]]:
    """Per variant: appends/s of each run (median), and the ratio to plain as the median over
    every round of plain's block time / the variant's block time in the same round (blocks
    run within a second of each other, so a burst of load on the machine hits both)."""
    out: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        rates = [log.n / sum(log.wall) for log in (r[name] for r in runs)]
        ratios = [p / v for r in runs for p, v in zip(r["plain"].wall, r[name].wall, strict=True)]
        cpu_us = [c / block * 1e6 for r in runs for c in r[name].cpu]
        out[name] = {
            "appends_per_s_median": statistics.median(rates),
            "appends_per_s_runs": rates,
            "ratio_to_plain": statistics.median(ratios),
            "ratio_to_plain_iqr": _iqr(ratios),
            "cpu_us_per_append_median": statistics.median(cpu_us),
        }
    for row in out.values():
        row["cpu_ratio_to_plain"] = (
            out["plain"]["cpu_us_per_append_median"] / row["cpu_us_per_append_median"]
        )
    return out


def _iqr(xs: list[float]) -> list[float]:
    q = statistics.quantiles(xs, n=4)
    return [q[0], q[2]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--entries", type=int, default=2000)
    p.add_argument("--block", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        runs = [one_run(Path(tmp), run, args.entries, args.block) for run in range(args.runs)]
    rows = summarise(runs, args.block)
    table = Table(
        "variant",
        "appends/s (median)",
        "runs",
        "ratio to plain (IQR)",
        "CPU us/append",
        "CPU ratio",
        title="audit appends",
    )
    for name, row in rows.items():
        lo, hi = row["ratio_to_plain_iqr"]
        table.add_row(
            name,
            f"{row['appends_per_s_median']:,.0f}",
            str(args.runs),
            f"{row['ratio_to_plain']:.2f} ({lo:.2f}-{hi:.2f})",
            f"{row['cpu_us_per_append_median']:.1f}",
            f"{row['cpu_ratio_to_plain']:.2f}",
        )
    Console().print(table)
    keyed = rows["hmac+anchor"]["ratio_to_plain"]
    print(
        f"keyed + anchored: {100 * (1 - keyed):.1f} % slower than the plain chain "
        f"(target at most 20 %): {'met' if keyed >= 0.8 else 'NOT met'}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "audit",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(),
                "settings": {
                    "runs": args.runs,
                    "entries_per_run": args.entries,
                    "block": args.block,
                    "transaction": "one Store.write() (BEGIN IMMEDIATE/COMMIT) per entry, "
                    "WAL, synchronous NORMAL; anchor line after COMMIT",
                },
                "plain_appends_per_s": rows["plain"]["appends_per_s_median"],
                "variants": rows,
                "target_ratio": 0.8,
                "target_met": keyed >= 0.8,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
