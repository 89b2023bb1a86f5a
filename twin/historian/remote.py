"""Read a plant's history wherever pyarrow can reach it: a local path, file://, s3://, gs://,
abfs://, hdfs:// (any `pyarrow.fs` URI), or a `pyarrow.fs.FileSystem` you built yourself.

Read-only and lock-free, like every historian reader: each day's manifest is the snapshot of
its live segments; the Parquet files are read with pyarrow (time filter pushed down), and a key
seen twice (a merged file and its inputs, briefly both listed after a crash) resolves to the
row with the highest `seq`. The embedded `Historian` stays the reader of a local home; this
one serves history kept on object storage and engines-side tooling.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from twin.errors import BadInput, HistorianError
from twin.historian.layout import DATE_KEY, LEGACY_DAYS, LEGACY_MANIFEST, MANIFEST
from twin.historian.times import TimeLike, as_datetime
from twin.sample import Quality

_RETRIES = 5


def open_filesystem(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a pyarrow URI or a local path; bad URIs are named."""
    text = str(uri)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise BadInput(f"historian URI {text!r}: {exc}") from None


class HistoryReader:
    """One plant folder (`.../historian/plant=NAME`) read through a pyarrow filesystem."""

    def __init__(self, uri: str | Path, filesystem: pafs.FileSystem | None = None) -> None:
        if filesystem is None:
            self.fs, self.root = open_filesystem(uri)
        else:
            self.fs, self.root = filesystem, str(uri).rstrip("/")
        info = self.fs.get_file_info(self.root)
        if info.type != pafs.FileType.Directory:
            raise BadInput(f"historian {uri}: no such plant folder")

    def day_folders(self) -> list[str]:
        """Paths of the day folders (Hive date= folders, and days/ of the older layout), by day."""
        found: dict[str, str] = {}
        for base, prefix in ((self.root, DATE_KEY), (f"{self.root}/{LEGACY_DAYS}", "")):
            sel = pafs.FileSelector(base, allow_not_found=True)
            for f in self.fs.get_file_info(sel):
                if f.type == pafs.FileType.Directory and f.base_name.startswith(prefix):
                    found[f.base_name[len(prefix) :]] = f.path
        return [found[d] for d in sorted(found)]

    def _manifest(self, folder: str) -> list[dict]:
        for name in (MANIFEST, LEGACY_MANIFEST):
            try:
                with self.fs.open_input_stream(f"{folder}/{name}") as f:
                    return json.loads(f.read())["segments"]
            except FileNotFoundError:
                continue
        return []

    def _files(self, start_us: int, end_us: int) -> list[str]:
        return [
            f"{folder}/{s['name']}"
            for folder in self.day_folders()
            for s in self._manifest(folder)
            if s["max_us"] >= start_us and s["min_us"] < end_us
        ]

    def read_long(
        self, start: TimeLike, end: TimeLike, tags: list[str] | None = None
    ) -> pd.DataFrame:
        """Samples in [start, end): columns ts, tag, value, quality; by time, then tag."""
        t0, t1 = as_datetime(start), as_datetime(end)
        table = self._read(t0, t1, tags)
        df = table.to_pandas()
        df["tag"] = df["tag"].astype(str)
        df = df.sort_values("seq", kind="stable").drop_duplicates(["tag", "ts"], keep="last")
        df = df.sort_values(["ts", "tag"], kind="stable").drop(columns="seq")
        df["ts"] = df["ts"].astype("datetime64[ns, UTC]")
        return df.reset_index(drop=True)

    def read(
        self, start: TimeLike, end: TimeLike, tags: list[str] | None = None, good_only: bool = True
    ) -> pd.DataFrame:
        """Wide frame: DatetimeIndex (UTC) named timestamp, one column per tag, sorted."""
        long = self.read_long(start, end, tags)
        if good_only:
            long = long.assign(value=long["value"].where(long["quality"] == Quality.GOOD))
        wide = long.pivot(index="ts", columns="tag", values="value")
        wide.index.name, wide.columns.name = "timestamp", None
        return wide.reindex(columns=sorted(wide.columns))

    def _read(self, t0: datetime, t1: datetime, tags: list[str] | None) -> pa.Table:
        us = pa.timestamp("us", tz="UTC")
        flt = (pa.compute.field("ts") >= pa.scalar(t0, us)) & (
            pa.compute.field("ts") < pa.scalar(t1, us)
        )
        if tags is not None:
            flt &= pa.compute.field("tag").isin(tags)
        start_us, end_us = _us(t0), _us(t1)
        for attempt in range(_RETRIES):
            files = self._files(start_us, end_us)
            if not files:
                break
            try:
                return pq.ParquetDataset(files, filesystem=self.fs, filters=flt).read(
                    columns=["ts", "tag", "value", "quality", "seq"]
                )
            except FileNotFoundError:
                time.sleep(0.01 * (attempt + 1))  # a merge replaced a file: re-read the manifests
        else:
            raise HistorianError(f"{self.root}: segments kept changing under {_RETRIES} reads")
        schema = pa.schema(
            [
                ("ts", us),
                ("tag", pa.string()),
                ("value", pa.float64()),
                ("quality", pa.int8()),
                ("seq", pa.int64()),
            ]
        )
        return schema.empty_table()


def _us(ts: datetime) -> int:
    return int(pd.Timestamp(ts).value // 1000)
