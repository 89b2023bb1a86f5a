"""Segment files: writing one atomically, and reading many through DuckDB.

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
    pq.write_table(
        table,
        tmp,
        row_group_size=config.row_group_rows,
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
    )
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


def query_segments(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    start_us: int | None,
    end_us: int | None,
    tag_ids: Sequence[int] | None,
    with_prio: bool,
    good_only: bool = False,
    all_good: bool = False,
) -> Columns:
    """Rows of `paths` with start <= ts < end and tag_id in `tag_ids` (None: all).

    good_only: values that are not GOOD and finite come back as NaN (masked inside DuckDB,
    in parallel, rather than in a numpy pass afterwards). all_good: every row of `paths` is GOOD,
    so there is nothing to mask.
    """
    where = []
    if start_us is not None:
        where.append(f"ts >= make_timestamptz({int(start_us)}::BIGINT)")
    if end_us is not None:
        where.append(f"ts < make_timestamptz({int(end_us)}::BIGINT)")
    if tag_ids is not None:
        if not tag_ids:
            return _empty(with_prio)
        # A literal IN list lets DuckDB prune row groups by the tag_id statistics.
        where.append(f"tag_id IN ({', '.join(str(int(i)) for i in tag_ids)})")
    value = (
        "CASE WHEN quality = 0 AND isfinite(value) THEN value ELSE 'NaN'::DOUBLE END AS value"
        if good_only and not all_good
        else "value"
    )
    # With good_only the mask is applied in SQL, so quality need not travel back at all.
    sql = (
        f"SELECT tag_id, ts, {value}"
        + ("" if good_only else ", quality")
        + (", seq" if with_prio else "")
        + f" FROM read_parquet({_sql_list(paths)})"
        + (" WHERE " + " AND ".join(where) if where else "")
    )
    table = con.sql(sql).to_arrow_table()
    return Columns(
        tag_id=_np(table, "tag_id", np.int32),
        ts=table.column("ts").to_numpy().view(np.int64),
        value=_np(table, "value", np.float64),
        quality=np.zeros(table.num_rows, np.int8) if good_only else _np(table, "quality", np.int8),
        prio=_np(table, "seq", np.int64) if with_prio else None,
    )


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


def _empty(with_prio: bool) -> Columns:
    return Columns(
        np.empty(0, np.int32),
        np.empty(0, np.int64),
        np.empty(0, np.float64),
        np.empty(0, np.int8),
        np.empty(0, np.int64) if with_prio else None,
    )
