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
- small reads (what every control-room rerun pays): 1 day x 10 tags, the last hour of 5 tags,
  the last 10 minutes of 5 tags, the last minute of 1 tag, and 1 day x 100 tags as the large
  read that must not get slower. Each is timed in the current code and in the code of the
  baseline commit (--baseline, default: the commit before the engine-free read path), each
  reading a day written by its own writer, in separate processes run alternately
  (--rounds x --small-runs reads each); the frames must be identical (compared by digest).
  Reported: median wall time, the fastest run, median CPU time, the first read in a fresh
  process, and the ratio baseline / current.
Every figure is the median of --runs runs (small reads: of rounds x small-runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
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
TARGET_SMALL_READ_S = 0.020
ROOT = Path(__file__).resolve().parent.parent

console = Console(width=150)


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


# ---- small reads: current code vs the baseline commit, in separate processes ----------------


def small_cases() -> dict[str, tuple[datetime, datetime, list[str]]]:
    end = DAY + timedelta(days=1)
    return {
        "1 day x 10 tags": (DAY, end, TAGS[::10]),
        "last hour x 5 tags": (end - timedelta(hours=1), end, TAGS[:5]),
        "last 10 min x 5 tags": (end - timedelta(minutes=10), end, TAGS[:5]),
        "last minute x 1 tag": (end - timedelta(minutes=1), end, TAGS[:1]),
        "1 day x 100 tags (large)": (DAY, end, TAGS),
    }


def digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(",".join(map(str, frame.columns)).encode())
    h.update(frame.index.as_unit("ns").asi8.tobytes())
    h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]


def measure_small_reads(folder: Path, runs: int) -> dict:
    """In this process's code: write the day if needed, then time each small read."""
    if not folder.exists():
        with Historian(folder) as h:
            h.append_wide(day_frame())
            h.flush()
            h.compact()
    out = {}
    reader = Historian(folder)
    for name, (start, end, tags) in small_cases().items():
        t0 = time.perf_counter()
        frame = reader.read(start, end, tags=tags)  # the first read of this process
        first = time.perf_counter() - t0
        _, times, cpu = timed_cpu(lambda s=start, e=end, t=tags: reader.read(s, e, tags=t), runs)
        out[name] = {
            "wall_s": times,
            "cpu_median_s": cpu,
            "first_s": first,
            "digest": digest(frame),
            "shape": list(frame.shape),
        }
    reader.close()
    return out


def baseline_tree(rev: str, work: Path) -> tuple[str, Path]:
    """The baseline commit's twin package, extracted under work/; (full hash, folder)."""
    full = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = work / f"baseline-{full[:10]}"
    if not tree.exists():
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", full, "twin"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return full, tree


def default_baseline() -> str:
    """The commit before the engine-free read path (twin/historian/scan.py) came in."""
    added = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "log",
            "--diff-filter=A",
            "--format=%H",
            "--",
            "twin/historian/scan.py",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def small_reads(work: Path, baseline: str, rounds: int, runs: int) -> dict:
    full, tree = baseline_tree(baseline, work)
    sides = {"current": str(ROOT), "baseline": str(tree)}
    samples: dict[str, dict[str, list[dict]]] = {side: {} for side in sides}
    for _ in range(rounds):
        for side, path in sides.items():
            env = {**os.environ, "PYTHONPATH": path}
            cmd = [
                sys.executable,
                __file__,
                "--measure-small",
                str(work / f"small-{side}"),
                "--small-runs",
                str(runs),
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"small reads ({side}) failed:\n{proc.stderr[-3000:]}")
            for name, m in json.loads(proc.stdout.splitlines()[-1]).items():
                samples[side].setdefault(name, []).append(m)
    cases = {}
    for name in small_cases():
        row: dict = {}
        for side in sides:
            ms = samples[side][name]
            wall = [t for m in ms for t in m["wall_s"]]
            row[side] = {
                "wall_median_s": statistics.median(wall),
                "wall_min_s": min(wall),
                "cpu_median_s": statistics.median(m["cpu_median_s"] for m in ms),
                "first_read_median_s": statistics.median(m["first_s"] for m in ms),
                "reads": len(wall),
                "digest": ms[0]["digest"],
                "shape": ms[0]["shape"],
            }
        digests = {m["digest"] for side in sides for m in samples[side][name]}
        row["same_frames"] = len(digests) == 1
        row["ratio_wall"] = row["baseline"]["wall_median_s"] / row["current"]["wall_median_s"]
        row["ratio_cpu"] = row["baseline"]["cpu_median_s"] / row["current"]["cpu_median_s"]
        cases[name] = row
    small = [n for n in cases if "large" not in n]
    return {
        "baseline_commit": full,
        "rounds": rounds,
        "runs_per_round": runs,
        "load_average_1min_at_end": os.getloadavg()[0],
        "cases": cases,
        "target_s": TARGET_SMALL_READ_S,
        "meets_target": all(
            cases[n]["current"]["wall_median_s"] <= TARGET_SMALL_READ_S for n in small
        ),
        "large_not_slower": cases["1 day x 100 tags (large)"]["ratio_wall"] >= 1.0,
        "results_identical": all(c["same_frames"] for c in cases.values()),
    }


def report_small(r: dict) -> None:
    table = Table(
        title=f"historian small reads: current vs baseline {r['baseline_commit'][:10]} "
        f"({r['rounds']} rounds x {r['runs_per_round']} reads, load average "
        f"{r['load_average_1min_at_end']:.1f})"
    )
    for col in (
        "read",
        "current ms (median / fastest / CPU / first)",
        "baseline ms (median / fastest / CPU / first)",
        "ratio wall",
        "ratio CPU",
        "same frames",
    ):
        table.add_column(col)
    for name, c in r["cases"].items():
        cells = []
        for side in ("current", "baseline"):
            m = c[side]
            cells.append(
                f"{1e3 * m['wall_median_s']:.1f} / {1e3 * m['wall_min_s']:.1f} / "
                f"{1e3 * m['cpu_median_s']:.1f} / {1e3 * m['first_read_median_s']:.1f}"
            )
        table.add_row(
            name,
            *cells,
            f"{c['ratio_wall']:.1f}x",
            f"{c['ratio_cpu']:.1f}x",
            "yes" if c["same_frames"] else "NO",
        )
    console.print(table)
    console.print(
        f"small reads <= {1e3 * r['target_s']:.0f} ms (median wall): "
        f"{'yes' if r['meets_target'] else 'NO'}; large read not slower: "
        f"{'yes' if r['large_not_slower'] else 'NO'}; identical frames: "
        f"{'yes' if r['results_identical'] else 'NO'}"
    )


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
    parser.add_argument("--baseline", default=None, help="commit whose reads are the baseline")
    parser.add_argument("--rounds", type=int, default=5, help="small reads: alternating rounds")
    parser.add_argument("--small-runs", type=int, default=7, help="small reads per round")
    parser.add_argument("--only-small", action="store_true", help="only the small-read figures")
    parser.add_argument("--measure-small", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_small is not None:  # a child of small_reads(): one side's timings as JSON
        print(json.dumps(measure_small_reads(args.measure_small, args.small_runs)))
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="twin-bench-historian-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.only_small and RESULTS.exists():
            results = json.loads(RESULTS.read_text())
        else:
            results = run(work, args.runs, args.append_ticks)
        with console.status("small reads: current vs baseline ..."):
            results["small_reads"] = small_reads(
                work, args.baseline or default_baseline(), args.rounds, args.small_runs
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    report_small(results["small_reads"])
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
