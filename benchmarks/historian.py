"""Historian benchmark: append throughput and the 1-day x 100-tag read, each against SQLite.

Run: python benchmarks/historian.py [--runs 3] [--append-ticks 3600]
Prints a table and writes benchmarks/results/historian.json.

The data is a synthetic plant of 100 tags (t000..t099) sampled every second: random walks,
so nothing compresses unrealistically well. The baseline is a SQLite table of the same samples
in WAL mode with a (tag, ts) primary key (a clustered index: SQLite's best layout for reading
one tag's time range), filled and read in the same run on the same machine.

- append: `Historian.append(samples)` one scan (100 samples) at a time, the way ingest calls it,
  until everything is flushed to disk, vs. SQLite executemany of the same samples in one
  transaction. Also the bulk path `append_frame` for one whole day.
- read: `Historian.read(day, day + 1 d, tags=100 tags)` -> wide frame of 86,400 x 100 (8.64M
  values) from the compacted day, vs. SQLite: one indexed range query per tag assembled into the
  same wide frame.
Every figure is the median of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from twin.historian import Historian
from twin.sample import Quality, Sample

RESULTS = Path(__file__).resolve().parent / "results" / "historian.json"
TAGS = [f"t{i:03d}" for i in range(100)]
DAY = datetime(2024, 1, 15, tzinfo=UTC)
SECONDS_PER_DAY = 86_400
TARGET_APPEND = 200_000
TARGET_READ_S = 0.5
TARGET_READ_RATIO = 3.0

console = Console()


def day_frame() -> pd.DataFrame:
    """One day of 1 s samples of 100 tags: random walks."""
    rng = np.random.default_rng(0)
    steps = rng.standard_normal((SECONDS_PER_DAY, len(TAGS))) * 0.01
    values = 50.0 + np.cumsum(steps, axis=0)
    index = pd.date_range(DAY, periods=SECONDS_PER_DAY, freq="1s", tz="UTC", name="timestamp")
    return pd.DataFrame(values, index=index, columns=TAGS)


def scans(frame: pd.DataFrame, ticks: int) -> list[list[Sample]]:
    """The first `ticks` rows of `frame` as lists of Samples (one list per scan)."""
    out = []
    values = frame.to_numpy()
    for i in range(ticks):
        ts = DAY + timedelta(seconds=i)
        out.append([Sample(ts, tag, float(values[i, j])) for j, tag in enumerate(TAGS)])
    return out


# ---- append -------------------------------------------------------------------------------


def append_historian(folder: Path, batches: list[list[Sample]]) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    h = Historian(folder)
    t0 = time.perf_counter()
    for batch in batches:
        h.append(batch)
    h.close()  # flushes: the time counts until everything is durable
    return time.perf_counter() - t0


def append_sqlite(path: Path, batches: list[list[Sample]]) -> float:
    path.unlink(missing_ok=True)
    con = sqlite_connect(path)
    t0 = time.perf_counter()
    with con:
        for batch in batches:
            con.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
                [(s.tag, to_us(s.ts), s.value, int(s.quality)) for s in batch],
            )
    con.close()
    return time.perf_counter() - t0


def append_frame_historian(folder: Path, long: pd.DataFrame) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    h = Historian(folder)
    t0 = time.perf_counter()
    h.append_frame(long)
    h.close()
    return time.perf_counter() - t0


def sqlite_connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE IF NOT EXISTS samples (tag TEXT NOT NULL, ts INTEGER NOT NULL, value REAL, "
        "quality INTEGER NOT NULL, PRIMARY KEY (tag, ts)) WITHOUT ROWID"
    )
    return con


def to_us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# ---- read ---------------------------------------------------------------------------------


def load_sqlite(path: Path, frame: pd.DataFrame) -> None:
    path.unlink(missing_ok=True)
    con = sqlite_connect(path)
    ts = frame.index.as_unit("us").asi8.tolist()
    with con:
        for tag in frame.columns:  # in key order, so the clustered index builds sequentially
            con.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, 0)",
                zip([tag] * len(ts), ts, frame[tag].tolist(), strict=True),
            )
    con.close()


def read_sqlite(path: Path, start: datetime, end: datetime) -> pd.DataFrame:
    con = sqlite3.connect(path)
    lo, hi = to_us(start), to_us(end)
    columns = {}
    index = None
    for tag in TAGS:
        rows = con.execute(
            "SELECT ts, value FROM samples WHERE tag = ? AND ts >= ? AND ts < ? AND quality = 0 ORDER BY ts",
            (tag, lo, hi),
        ).fetchall()
        arr = np.array(rows, dtype=np.float64)
        if index is None:
            index = arr[:, 0].astype(np.int64)
        columns[tag] = arr[:, 1]
    con.close()
    idx = pd.DatetimeIndex((index * 1000).view("datetime64[ns]"), name="timestamp").tz_localize(
        "UTC"
    )
    return pd.DataFrame(columns, index=idx)


def timed(fn, runs: int) -> tuple[float, list[float]]:
    """Median wall time of `runs` calls, and every run's wall time."""
    median, times, _ = timed_cpu(fn, runs)
    return median, times


def timed_cpu(fn, runs: int) -> tuple[float, list[float], float]:
    """Also the median CPU time of the process (all threads): less sensitive to a busy machine."""
    times, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, statistics.median(cpu)


# ---- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument(
        "--append-ticks", type=int, default=3600, help="scans of 100 samples appended"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="twin-bench-historian-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run(work, args.runs, args.append_ticks)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"saved {RESULTS}")
    return 0


def run(work: Path, runs: int, append_ticks: int) -> dict:
    frame = day_frame()
    n_values = append_ticks * len(TAGS)
    with console.status("append: historian vs SQLite ..."):
        batches = scans(frame, append_ticks)
        h_append, h_append_runs = timed(lambda: append_historian(work / "append_h", batches), runs)
        s_append, s_append_runs = timed(
            lambda: append_sqlite(work / "append.sqlite", batches), runs
        )
    with console.status("bulk append of one day (append_frame) ..."):
        long = (
            frame.rename_axis("ts")
            .reset_index()
            .melt(id_vars="ts", var_name="tag", value_name="value")
        )
        long["quality"] = np.int8(Quality.GOOD)
        bulk, bulk_runs = timed(lambda: append_frame_historian(work / "bulk_h", long), runs)
    with console.status("loading one day into both stores ..."):
        folder = work / "read_h"
        shutil.rmtree(folder, ignore_errors=True)
        with Historian(folder) as h:
            h.append_wide(frame)
            h.flush()
            h.compact()
        db = work / "read.sqlite"
        load_sqlite(db, frame)
    end = DAY + timedelta(days=1)
    reader = Historian(folder)
    with console.status("read 1 day x 100 tags ..."):
        check = reader.read(DAY, end, tags=TAGS)
        if check.shape != frame.shape or not np.array_equal(check.to_numpy(), frame.to_numpy()):
            raise SystemExit("historian read returned different data than was written")
        h_read, h_read_runs, h_read_cpu = timed_cpu(lambda: reader.read(DAY, end, tags=TAGS), runs)
        h_read10, _ = timed(lambda: reader.read(DAY, end, tags=TAGS[::10]), runs)
        h_resample, _ = timed(lambda: reader.read(DAY, end, tags=TAGS, resample="1min"), runs)
    with console.status("SQLite read 1 day x 100 tags ..."):
        sq = read_sqlite(db, DAY, end)
        if not np.array_equal(sq.to_numpy(), frame.to_numpy()):
            raise SystemExit("SQLite baseline returned different data than was written")
        s_read, s_read_runs, s_read_cpu = timed_cpu(lambda: read_sqlite(db, DAY, end), runs)
    n_read = frame.size
    return {
        "benchmark": "historian",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "runs": runs,
        "append": {
            "values": n_values,
            "historian_values_per_s": n_values / h_append,
            "sqlite_values_per_s": n_values / s_append,
            "ratio_vs_sqlite": s_append / h_append,
            "historian_runs_s": h_append_runs,
            "sqlite_runs_s": s_append_runs,
            "target_values_per_s": TARGET_APPEND,
            "meets_target": n_values / h_append >= TARGET_APPEND,
        },
        "append_frame_one_day": {
            "values": n_read,
            "historian_values_per_s": n_read / bulk,
            "runs_s": bulk_runs,
        },
        "read_1day_100tags": {
            "values": n_read,
            "historian_s": h_read,
            "sqlite_s": s_read,
            "speedup_vs_sqlite": s_read / h_read,
            "historian_runs_s": h_read_runs,
            "sqlite_runs_s": s_read_runs,
            "historian_cpu_s": h_read_cpu,
            "sqlite_cpu_s": s_read_cpu,
            "historian_10_tags_s": h_read10,
            "historian_resample_1min_s": h_resample,
            "target_s": TARGET_READ_S,
            "target_speedup": TARGET_READ_RATIO,
            "meets_target": h_read <= TARGET_READ_S and s_read / h_read >= TARGET_READ_RATIO,
        },
    }


def report(r: dict) -> None:
    a, b, rd = r["append"], r["append_frame_one_day"], r["read_1day_100tags"]
    m = r["machine"]
    table = Table(
        title=f"historian benchmark (median of {r['runs']} runs, {m['cpus']} CPUs, "
        f"load average {m['load_average_1min_at_end']:.1f} at the end)"
    )
    for col in ("measure", "historian", "SQLite baseline", "ratio", "target", "met"):
        table.add_column(col)
    table.add_row(
        f"append (Sample scans), values/s [{a['values']:,} values]",
        f"{a['historian_values_per_s']:,.0f}",
        f"{a['sqlite_values_per_s']:,.0f}",
        f"{a['ratio_vs_sqlite']:.2f}x",
        f">= {a['target_values_per_s']:,}",
        "yes" if a["meets_target"] else "NO",
    )
    table.add_row(
        "append_frame (bulk, 1 day), values/s",
        f"{b['historian_values_per_s']:,.0f}",
        "-",
        "-",
        "-",
        "-",
    )
    table.add_row(
        f"read 1 day x 100 tags @1 s [{rd['values']:,} values], s",
        f"{rd['historian_s']:.3f}",
        f"{rd['sqlite_s']:.3f}",
        f"{rd['speedup_vs_sqlite']:.1f}x faster",
        f"<= {rd['target_s']} s, >= {rd['target_speedup']:.0f}x",
        "yes" if rd["meets_target"] else "NO",
    )
    table.add_row(
        "  same read, CPU time of the process, s",
        f"{rd['historian_cpu_s']:.3f}",
        f"{rd['sqlite_cpu_s']:.3f}",
        f"{rd['sqlite_cpu_s'] / rd['historian_cpu_s']:.1f}x less",
        "-",
        "-",
    )
    table.add_row("read 1 day x 10 tags, s", f"{rd['historian_10_tags_s']:.3f}", "-", "-", "-", "-")
    table.add_row(
        "read 1 day x 100 tags, 1 min means, s",
        f"{rd['historian_resample_1min_s']:.3f}",
        "-",
        "-",
        "-",
        "-",
    )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
