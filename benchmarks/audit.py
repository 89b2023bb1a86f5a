"""Audit benchmark: appends per second of the keyed, anchored log against the plain hash chain.

Run: python benchmarks/audit.py [--runs 5] [--entries 2000]
Prints a table and writes benchmarks/results/audit.json.

Each append is what the state store does for an audit entry on its own (`Store.log_event`):
one `BEGIN IMMEDIATE` ... `COMMIT` transaction on a WAL SQLite file, holding one entry with a
small `what`. Three variants, each in a fresh database of the same run, appended to in blocks
of 100 that alternate between the variants, so machine load falls on all alike:

- plain: the hash chain only (no key, no anchor) -- the log as it was before the key;
- hmac: + HMAC-SHA256 with the audit key;
- hmac+anchor: + the committed head appended to the anchor file (what a twin home does).

Figures are medians of --runs runs; the ratio is against plain in the same run. Target: the
keyed, anchored log at most 20 % slower (ratio >= 0.80).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from twin import audit
from twin.audit_keys import AuditFiles

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
VARIANTS: dict[str, Callable[[Path], AuditFiles]] = {
    "plain": lambda home: AuditFiles(None, None),
    "hmac": lambda home: AuditFiles(home / "keys", None),
    "hmac+anchor": lambda home: AuditFiles(home / "keys", home / "audit.anchor"),
}


def _connect(db: Path) -> sqlite3.Connection:
    """The connection settings of the state store (WAL, synchronous NORMAL, autocommit)."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = NORMAL")
    c.execute("BEGIN IMMEDIATE")
    audit.create_schema(c)
    c.execute("COMMIT")
    return c


class _Log:
    """One variant's database, appended to block by block; its own time is summed."""

    def __init__(self, home: Path, files: AuditFiles) -> None:
        home.mkdir(parents=True)
        self.home, self.files = home, files
        self.c = _connect(home / "state.db")
        self.n, self.seconds = 0, 0.0
        self.path = home / "state.db"  # what verify needs of a store: path and query

    def query(self, sql: str, params: tuple = ()) -> list:
        return self.c.execute(sql, params).fetchall()

    def block(self, n: int) -> None:
        what = {"Tc": 301.5, "F": 0.98, "reason": "benchmark"}
        t0 = time.perf_counter()
        for i in range(n):
            self.c.execute("BEGIN IMMEDIATE")
            audit.append(self.c, user="bench", kind="test", plant="cstr", subject=f"s:{i}",
                         what=what, why="", files=self.files)  # fmt: skip
            self.c.execute("COMMIT")
        self.seconds += time.perf_counter() - t0
        self.n += n

    def rate(self) -> float:
        """Entries per second; the log must verify in full first."""
        result = audit.verify(self, files=self.files)
        if not result.ok or result.entries != self.n:
            raise SystemExit(f"the {self.files} log did not verify: {result}")
        self.c.close()
        return self.n / self.seconds


def one_run(tmp: Path, run: int, entries: int, block: int = 100) -> dict[str, float]:
    """Every variant's rate; blocks of appends alternate between variants, so load hits all alike."""
    logs = {name: _Log(tmp / f"{name}-{run}", files_of(tmp / f"{name}-{run}"))
            for name, files_of in VARIANTS.items()}  # fmt: skip
    for _ in range(entries // block):
        for log in logs.values():
            log.block(block)
    return {name: log.rate() for name, log in logs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--entries", type=int, default=2000)
    args = p.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        for run in range(args.runs):
            for name, rate in one_run(Path(tmp), run, args.entries).items():
                rates[name].append(rate)
    base = statistics.median(rates["plain"])
    # Ratio run by run (same moment, same load), then the median of those.
    rows = {
        name: {
            "appends_per_s_median": statistics.median(r),
            "appends_per_s_runs": r,
            "ratio_to_plain": statistics.median(
                [x / b for x, b in zip(r, rates["plain"], strict=True)]
            ),
        }
        for name, r in rates.items()
    }
    table = Table("variant", "appends/s (median)", "runs", "ratio to plain", title="audit appends")
    for name, row in rows.items():
        table.add_row(name, f"{row['appends_per_s_median']:,.0f}", str(args.runs),
                      f"{row['ratio_to_plain']:.2f}")  # fmt: skip
    Console().print(table)
    keyed = rows["hmac+anchor"]["ratio_to_plain"]
    print(f"keyed + anchored: {100 * (1 - keyed):.1f} % slower than the plain chain "
          f"(target at most 20 %): {'met' if keyed >= 0.8 else 'NOT met'}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "audit",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]},
        "settings": {"runs": args.runs, "entries_per_run": args.entries,
                     "transaction": "one BEGIN IMMEDIATE/COMMIT per entry, WAL, synchronous NORMAL"},
        "plain_appends_per_s": base,
        "variants": rows,
        "target_ratio": 0.8,
        "target_met": keyed >= 0.8,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
