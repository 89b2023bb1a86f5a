"""Segment files: writing one atomically (row groups cut at tag boundaries), and averaging
many per time bin through DuckDB (rows are read by twin.historian.scan).

A segment is a Parquet file of one UTC day, sorted by (tag_id, ts), each key once, with the
columns ts (timestamp[us, UTC]), tag (dictionary-encoded name, so the file explains itself),
tag_id (int32: what reads filter on, cheaper than strings), value (float64), quality (int8)
and seq (the segment's write sequence, constant in the file; it breaks ties on read while a
merged file and its inputs are briefly both visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.historian.columns import Columns
from twin.historian.config import HistorianConfig
from twin.historian.layout import SCHEMA_VERSION, Segment, publish, segment_name, temp_path

TS_TYPE = pa.timestamp("us", tz="UTC")


def row_groups(tag_id: np.ndarray, target: int) -> list[tuple[int, int]]:
    """Row ranges [a, b) of a segment's row groups (rows sorted by tag id): at most `target`
    rows each, and cut where the tag changes, unless that would leave a group under a quarter
    of `target`. A read of a few tags then decodes little beyond their own rows (a day of one
    tag at 1 s is one group), while small tags still share groups."""
    n = len(tag_id)
    starts = np.flatnonzero(np.r_[True, tag_id[1:] != tag_id[:-1]]) if n else np.empty(0, int)
    ends = np.r_[starts[1:], n]
    out, lo = [], 0
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - lo > target and s - lo >= target // 4:  # the tag does not fit: close at its start
            out.append((lo, s))
            lo = s
        while e - lo > target:  # a tag longer than a group: whole groups of it
            out.append((lo, lo + target))
            lo += target
    if lo < n:
        out.append((lo, n))
    return out


def write_segment(
    folder: Path,
    cols: Columns,
    lo: int,
    hi: int,
    names_by_id: Sequence[str],
    config: HistorianConfig,
) -> Segment:
    """Write `cols` (already ordered and unique) as segment lo..hi of a day; returns its entry."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "ts": pa.array(cols.ts, type=pa.int64()).cast(TS_TYPE),
            "tag": pa.DictionaryArray.from_arrays(
                pa.array(cols.tag_id, type=pa.int32()), pa.array(list(names_by_id), pa.string())
            ),
            "tag_id": pa.array(cols.tag_id, type=pa.int32()),
            "value": pa.array(cols.value, type=pa.float64()),
            "quality": pa.array(cols.quality, type=pa.int8()),
            "seq": pa.array(np.full(len(cols), hi, dtype=np.int64)),
        },
        metadata={"twin.historian.schema_version": str(SCHEMA_VERSION)},
    )
    final = folder / segment_name(lo, hi)
    tmp = temp_path(folder, ".parquet")
    with pq.ParquetWriter(
        tmp,
        table.schema,
        # ts is nearly regular: delta encoding makes it tiny and cheap to decode (no codec on
        # top); tag_id, seq and quality are long runs: dictionary + run-length encoding.
        compression={
            "ts": "none",
            "tag": config.compression,
            "tag_id": config.compression,
            "value": config.compression,
            "quality": config.compression,
            "seq": config.compression,
        },
        use_dictionary=["tag", "tag_id", "seq", "quality"],
        column_encoding={"ts": "DELTA_BINARY_PACKED"},
        write_statistics=["ts", "tag_id"],
    ) as out:
        for a, b in row_groups(cols.tag_id, config.row_group_rows):
            out.write_table(table.slice(a, b - a), row_group_size=b - a)
    publish(tmp, final)
    return Segment(
        name=final.name,
        lo=lo,
        hi=hi,
        rows=len(cols),
        min_us=int(cols.ts.min()),
        max_us=int(cols.ts.max()),
        all_good=bool(np.all(cols.quality == 0)),
    )


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def query_bin_means(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    start_us: int,
    end_us: int,
    tag_ids: Sequence[int],
    first_us: int,
    step_us: int,
    good_only: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tag_id, bin, mean) of the finite (and, with good_only, GOOD) values per time bin.

    Bin k covers [first + k * step, first + (k + 1) * step). Only valid when no key repeats
    across `paths` (duplicates must be resolved before averaging).
    """
    if not tag_ids:
        return np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64)
    usable = "isfinite(value)" + (" AND quality = 0" if good_only else "")
    sql = (
        f"SELECT tag_id, (epoch_us(ts) - {int(first_us)}) // {int(step_us)} AS bin, avg(value) AS v"
        f" FROM read_parquet({_sql_list(paths)})"
        f" WHERE ts >= make_timestamptz({int(start_us)}::BIGINT)"
        f" AND ts < make_timestamptz({int(end_us)}::BIGINT)"
        f" AND tag_id IN ({', '.join(str(int(i)) for i in tag_ids)}) AND {usable}"
        " GROUP BY ALL"
    )
    table = con.sql(sql).to_arrow_table()
    return _np(table, "tag_id", np.int32), _np(table, "bin", np.int64), _np(table, "v", np.float64)


def _np(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(), dtype=dtype)
