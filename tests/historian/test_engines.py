"""The history as any engine sees it: Hive partitions read by DuckDB straight from the files
(matching `twin export`), the reader on a pyarrow filesystem URI, compaction and retention."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from twin.cli import main
from twin.generate import generate_into
from twin.historian import Historian
from twin.historian.remote import HistoryReader
from twin.paths import Home
from twin.spec import load_spec

START = datetime(2026, 2, 1, 21, 0, tzinfo=UTC)  # 4 h across midnight: two date= partitions
END = datetime(2026, 2, 2, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = Home.at(tmp_path_factory.mktemp("engines"))
    generate_into(home, load_spec("cstr"), 4.0, seed=5, start=START, progress=False)
    return home


def _duckdb_wide(historian_root: str, plant: str) -> pd.DataFrame:
    """What a person would write in DuckDB: the files, Hive keys, last write wins, good only."""
    sql = f"""
        SELECT ts, tag, value, date
        FROM read_parquet('{historian_root}/*/*/seg-*.parquet', hive_partitioning = true)
        WHERE plant = '{plant}' AND quality = 0
        QUALIFY row_number() OVER (PARTITION BY tag, ts ORDER BY seq DESC) = 1
    """
    long = duckdb.sql(sql).df()
    assert (pd.to_datetime(long["ts"]).dt.strftime("%Y-%m-%d") == long["date"].astype(str)).all()
    wide = long.pivot(index="ts", columns="tag", values="value")
    return wide.reindex(columns=sorted(wide.columns))


def test_duckdb_reads_the_hive_partitions_as_twin_export_does(home, tmp_path, capsys) -> None:
    root = home.root / "historian"
    assert sorted(p.name for p in (root / "plant=cstr").glob("date=*")) == [
        "date=2026-02-01",
        "date=2026-02-02",
    ]
    out = tmp_path / "cstr.parquet"
    args = [
        "export",
        "cstr",
        "--start",
        START.isoformat(),
        "--end",
        END.isoformat(),
        "-o",
        str(out),
    ]
    assert main([*args, "--home", str(home.root)]) == 0
    exported = pd.read_parquet(out).set_index("timestamp")
    direct = _duckdb_wide(str(root), "cstr")
    direct.index = pd.DatetimeIndex(direct.index).tz_convert("UTC").as_unit("ns")
    exported.index = pd.DatetimeIndex(pd.to_datetime(exported.index, utc=True)).as_unit("ns")
    assert len(exported) == 4 * 3600 // 5
    pd.testing.assert_frame_equal(
        direct, exported[direct.columns], check_names=False, check_freq=False
    )
    seg = next((root / "plant=cstr").glob("date=*/seg-*.parquet"))
    assert pq.read_schema(seg).metadata[b"twin.historian.schema_version"] == b"2"


def test_reader_on_a_pyarrow_filesystem_uri_matches_the_historian(home) -> None:
    folder = home.historian_dir("cstr")
    remote = HistoryReader(f"file://{folder}")
    local = Historian(folder)
    pd.testing.assert_frame_equal(
        remote.read_long(START, END), local.read_long(START, END), check_dtype=False
    )
    pd.testing.assert_frame_equal(
        remote.read(START, END, ["Ca", "T"]),
        local.read(START, END, ["Ca", "T"]),
        check_freq=False,
    )
    with pytest.raises(Exception, match="no such plant folder"):
        HistoryReader(f"file://{folder}-missing")


def test_compact_and_vacuum(home, tmp_path, capsys) -> None:
    import shutil

    copy = Home.at(tmp_path / "h")
    shutil.copytree(home.root / "historian", copy.root / "historian")
    folder = copy.historian_dir("cstr")
    before = Historian(folder).read_long(START, END)
    base = ["--home", str(copy.root)]
    assert main(["historian", "compact", "cstr", *base]) == 0
    assert all(len(list(d.glob("seg-*.parquet"))) == 1 for d in folder.glob("date=*"))
    pd.testing.assert_frame_equal(Historian(folder).read_long(START, END), before)

    assert main(["historian", "vacuum", "cstr", "--before", "2026-02-02", "--dry-run", *base]) == 0
    assert "would remove 1 days" in capsys.readouterr().out
    assert len(list(folder.glob("date=*"))) == 2
    with Historian(folder) as writer:
        writer.compact()  # holds the writer lock: a vacuum now must refuse, naming the folder
        assert main(["historian", "vacuum", "cstr", "--before", "2026-02-02", *base]) == 1
        assert str(folder) in capsys.readouterr().err
    assert main(["historian", "vacuum", "cstr", "--before", "2026-02-02", *base]) == 0
    assert "removed 1 days before 2026-02-02" in capsys.readouterr().out
    assert [d.name for d in folder.glob("date=*")] == ["date=2026-02-02"]
    after = Historian(folder).read_long(START, END)
    assert after["ts"].min() == pd.Timestamp("2026-02-02", tz="UTC")
    pd.testing.assert_frame_equal(
        after, before[before["ts"] >= pd.Timestamp("2026-02-02", tz="UTC")].reset_index(drop=True)
    )
    assert main(["historian", "vacuum", "cstr", *base]) == 2  # neither --keep-days nor --before
