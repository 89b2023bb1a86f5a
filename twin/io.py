"""Import and export of plant history in the wide file format (docs/architecture.md, "Import format").

A file holds a `timestamp` column (ISO 8601, naive = UTC, or epoch seconds) and one column per
tag, named as in the plant spec. A missing cell is a missing sample, never a zero. Import
validates the whole file before storing anything, so a bad file leaves the historian untouched;
export writes the same format, so export -> import round-trips.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from twin.errors import BadInput, ImportFileError
from twin.historian import Historian
from twin.sample import Quality
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

TIME_COLUMN = "timestamp"
MAX_PROBLEMS = 10
EPOCH_S_MAX = 7_258_118_400  # 2200-01-01T00:00:00Z
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ImportReport:
    """What an import stored."""

    rows: int
    """Data rows in the file."""
    values: int
    """Samples stored (non-missing cells)."""
    tags: list[str]
    """Tag columns of the file."""
    out_of_range: int
    """Values outside their tag's engineering limits, stored with quality OUT_OF_RANGE."""
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    rows: int
    values: int
    tags: list[str]
    path: Path


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportFileError(path, f"unknown file type {path.suffix!r}: use .csv or .parquet")
    return fmt


# ---- import ------------------------------------------------------------------------------


class _Problems:
    """Collects row/column problems so one message can list the first MAX_PROBLEMS."""

    def __init__(self, path: Path, row_note: str) -> None:
        self.path = path
        self.row_note = row_note
        self.items: list[tuple[int | None, str | None, str]] = []
        self.total = 0

    def add(self, row: int | None, column: str | None, reason: str) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append((row, column, reason))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        lines = []
        for row, column, reason in self.items:
            where = ", ".join(
                p
                for p in (f"row {row}" if row else "", f"column {column!r}" if column else "")
                if p
            )
            lines.append(f"  {where}: {reason}" if where else f"  {reason}")
        more = (
            f"\n  ... and {self.total - len(self.items)} more"
            if self.total > len(self.items)
            else ""
        )
        reason = (
            f"{self.total} problem{'s' if self.total > 1 else ''}; nothing was imported "
            f"({self.row_note}):\n" + "\n".join(lines) + more
        )
        row, column, _ = self.items[0]
        raise ImportFileError(self.path, reason, row=row, column=column)


def read_table(path: Path) -> pd.DataFrame:
    """The file as a frame; CSV cells stay text so that every cell can be checked."""
    fmt = file_format(path)
    if not path.is_file():
        raise ImportFileError(path, "no such file")
    try:
        if fmt == "csv":
            # utf-8-sig: spreadsheets often start CSV files with a byte-order mark.
            return pd.read_csv(
                path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig"
            )
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ImportFileError(path, f"cannot read as {fmt}: {exc}") from exc


def parse_wide(path: Path, spec: PlantSpec) -> pd.DataFrame:
    """Validate a wide import file: a float frame with a UTC DatetimeIndex, one column per tag."""
    path = Path(path)
    raw = read_table(path)
    is_csv = file_format(path) == "csv"
    # Row numbers are 1-based data rows: the first row after the CSV header is row 1.
    note = (
        "rows are data rows counted from 1, the CSV header not counted"
        if is_csv
        else "rows counted from 1"
    )
    problems = _Problems(path, note)
    columns = [str(c) for c in raw.columns]
    if TIME_COLUMN not in columns:
        problems.add(
            None, None, f"no {TIME_COLUMN!r} column (columns: {', '.join(columns) or 'none'})"
        )
    known = set(spec.tag_names)
    for c in columns:
        if c != TIME_COLUMN and c not in known:
            problems.add(None, c, f"unknown column: plant {spec.name!r} has no tag {c!r}")
    problems.raise_if_any()
    index = _parse_timestamps(raw[TIME_COLUMN], problems)
    tags = [c for c in columns if c != TIME_COLUMN]
    values = {tag: _parse_values(raw[tag], tag, problems) for tag in tags}
    problems.raise_if_any()
    frame = pd.DataFrame(values, index=index, columns=tags)
    return frame


def _parse_timestamps(col: pd.Series, problems: _Problems) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        ts = pd.DatetimeIndex(col)
        ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
        for r in np.flatnonzero(ts.isna())[:MAX_PROBLEMS]:
            problems.add(int(r) + 1, TIME_COLUMN, "missing timestamp")
        return ts.rename(TIME_COLUMN)
    if pd.api.types.is_numeric_dtype(col.dtype):
        seconds = col.to_numpy(dtype=np.float64)
        text = None
    else:
        text = col.astype(str).str.strip()
        seconds = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)
    numeric = np.isfinite(seconds)
    # Epoch seconds between 1970 and 2200; anything else is most likely milliseconds.
    implausible = numeric & ((seconds < 0) | (seconds > EPOCH_S_MAX))
    for r in np.flatnonzero(implausible):
        problems.add(
            int(r) + 1, TIME_COLUMN, f"epoch seconds {seconds[r]:.0f} out of range (milliseconds?)"
        )
    use = numeric & ~implausible
    nat = np.iinfo(np.int64).min
    us = np.full(len(col), nat, dtype=np.int64)  # microseconds, the historian's resolution
    us[use] = np.round(seconds[use] * 1e6).astype(np.int64)
    if text is not None and not numeric.all():
        iso = pd.to_datetime(text[~numeric], utc=True, errors="coerce", format="ISO8601")
        us[~numeric] = iso.dt.tz_localize(None).astype("datetime64[us]").to_numpy().view(np.int64)
    far = (us != nat) & ((us < 0) | (us > EPOCH_S_MAX * 1_000_000))
    for r in np.flatnonzero(far & ~implausible):
        problems.add(
            int(r) + 1, TIME_COLUMN, f"timestamp {_cell(text, r)!r} is not between 1970 and 2200"
        )
    us[far] = nat
    out = pd.DatetimeIndex(us.view("datetime64[us]")).tz_localize("UTC").as_unit("ns")
    for r in np.flatnonzero(out.isna() & ~implausible & ~far):
        cell = _cell(text, r)
        reason = "missing timestamp" if cell in ("", "nan") else f"cannot parse timestamp {cell!r}"
        problems.add(int(r) + 1, TIME_COLUMN, reason + " (use ISO 8601 or epoch seconds)")
    return out.rename(TIME_COLUMN)


def _cell(text: pd.Series | None, row: int | np.integer) -> str:
    return "" if text is None else str(text.iloc[int(row)])


def _parse_values(col: pd.Series, tag: str, problems: _Problems) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    text = col.astype(object).where(col.notna(), "").astype(str).str.strip()
    values = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)
    blank = text.str.lower().isin(["", "nan", "na", "null", "none"]).to_numpy()
    for r in np.flatnonzero(np.isnan(values) & ~blank):
        problems.add(int(r) + 1, tag, f"not a number: {text.iloc[r]!r}")
    values[blank] = np.nan
    return values


def to_long(frame: pd.DataFrame, spec: PlantSpec) -> tuple[pd.DataFrame, int]:
    """Wide frame -> long samples (missing cells dropped); out-of-range values flagged."""
    parts = []
    flagged = 0
    ts = frame.index
    for tag in frame.columns:
        v = frame[tag].to_numpy(dtype=np.float64)
        present = ~np.isnan(v)
        lo, hi = spec.tag(tag).limits
        quality = np.zeros(int(present.sum()), dtype=np.int8)
        vp = v[present]
        outside = np.isfinite(vp) & ((vp < lo) | (vp > hi))
        quality[outside] = Quality.OUT_OF_RANGE
        flagged += int(outside.sum())
        parts.append(pd.DataFrame({"ts": ts[present], "tag": tag, "value": vp, "quality": quality}))
    if not parts:
        return pd.DataFrame({"ts": [], "tag": [], "value": [], "quality": []}), 0
    return pd.concat(parts, ignore_index=True), flagged


def import_file(historian: Historian, spec: PlantSpec, path: Path | str) -> ImportReport:
    """Validate `path` completely, then store all of it (append + flush) or nothing."""
    path = Path(path)
    frame = parse_wide(path, spec)
    long, flagged = to_long(frame, spec)
    if len(long):
        historian.append_frame(long)
        historian.flush()
    if flagged:
        log.info("%s: %d values outside engineering limits stored as OUT_OF_RANGE", path, flagged)
    index = frame.index
    return ImportReport(
        rows=len(frame),
        values=len(long),
        tags=list(frame.columns),
        out_of_range=flagged,
        start=index.min().to_pydatetime() if len(index) else None,
        end=index.max().to_pydatetime() if len(index) else None,
    )


# ---- export ------------------------------------------------------------------------------

FILLS = ("hold", "none")


def _hold_limits(spec: PlantSpec, names: list[str], fill: str | None) -> dict[str, float]:
    """How long each tag's value is carried forward (seconds); tags not held are left out."""
    if fill == "none":
        return {}
    if fill == "hold":
        return {t: spec.max_age_s(t) for t in names}
    return {t: h for t in names if (h := spec.hold_s(t)) is not None}


def _resampled(
    historian: Historian,
    spec: PlantSpec,
    start: datetime,
    end: datetime,
    names: list[str],
    resample: str,
    fill: str | None,
) -> pd.DataFrame:
    try:
        step = pd.Timedelta(resample)
    except ValueError as exc:
        raise BadInput(f"--resample {resample!r}: not an interval such as 10s or 1min") from exc
    holds = _hold_limits(spec, names, fill)
    # A held value may come from before the window: read back as far as the longest hold.
    lead = pd.Timedelta(seconds=max(holds.values(), default=0.0))
    frame = historian.read(start - lead, end, tags=names, resample=resample, good_only=True)
    for tag, hold_s in holds.items():
        if tag in frame:
            frame[tag] = frame[tag].ffill(limit=max(int(hold_s // step.total_seconds()), 0))
    return frame.loc[frame.index >= pd.Timestamp(start)].dropna(how="all")


def export_file(
    historian: Historian,
    spec: PlantSpec,
    start: datetime,
    end: datetime,
    out: Path | str,
    tags: list[str] | None = None,
    resample: str | None = None,
    fill: str | None = None,
) -> ExportReport:
    """Write [start, end) of `tags` (default all of the spec's) in the import format.

    Only usable values (GOOD and finite) are written; others are blank cells, so that a
    re-import never turns a flagged value into good data. With `resample`, `fill` says what an
    interval without a sample holds: "hold" carries the last value forward for at most the
    tag's max age, "none" leaves it blank; by default a report-by-exception tag holds (it sends
    only changes, so silence means "unchanged") and the others stay blank.
    """
    out = Path(out)
    fmt = SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise BadInput(f"-o {out}: unknown file type {out.suffix!r}: use .csv or .parquet")
    if end <= start:
        raise BadInput(f"--end {end.isoformat()} must be after --start {start.isoformat()}")
    names = tags or spec.tag_names
    unknown = [t for t in names if t not in spec.tag_names]
    if unknown:
        raise BadInput(f"--tags: plant {spec.name!r} has no tag {unknown[0]!r}")
    if fill is not None and fill not in FILLS:
        raise BadInput(f"--fill {fill!r}: use one of {', '.join(FILLS)}")
    if fill is not None and resample is None:
        raise BadInput("--fill applies only with --resample")
    if resample is None:
        frame = historian.read(start, end, tags=names, good_only=True)
    else:
        frame = _resampled(historian, spec, start, end, names, resample, fill)
    table = frame.reset_index()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "csv":
        table[TIME_COLUMN] = table[TIME_COLUMN].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        table.to_csv(tmp, index=False, na_rep="", float_format=None)
    else:
        table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return ExportReport(
        rows=len(frame), values=int(frame.notna().to_numpy().sum()), tags=list(names), path=out
    )
