"""`twin import` / `twin export` through the real CLI entry point, with a plant defined outside the repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.cli import main
from twin.historian import Historian
from twin.paths import Home
from twin.sample import Quality

PLANT_TOML = """
[plant]
name = "outside_plant"
sample_period_s = 1.0
control_interval_s = 5.0

[[tags]]
name = "level"
role = "cv"
unit = "cm"
limits = [0.0, 20.0]

[[tags]]
name = "pump"
role = "mv"
limits = [0.0, 10.0]
max_move = 1.0

[[tags]]
name = "inflow"
role = "dv"
limits = [-5.0, 5.0]
"""


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere" / "my_plant"
    folder.mkdir(parents=True)
    (folder / "plant.toml").write_text(PLANT_TOML)
    return folder / "plant.toml"


def historian(home: Path) -> Historian:
    return Historian(Home.at(home).historian_dir("outside_plant"))


def twin(*args: object) -> int:
    return main([str(a) for a in args])


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


GOOD_CSV = """
timestamp,level,pump,inflow
2024-06-01T00:00:00Z,5.5,1,0.125
2024-06-01 00:00:01,6.25,,0.5
1717200002,7,2,
2024-06-01T02:00:03+02:00,25,3,-1
"""


def test_import_reports_and_stores_missing_cells_as_missing(plant, tmp_path, capsys):
    home = tmp_path / "home"
    src = write_csv(tmp_path / "in.csv", GOOD_CSV)
    assert twin("import", plant, src, "--home", home) == 0
    out = capsys.readouterr().out
    assert "4 rows" in out and "10 values" in out and "2024-06-01T00:00:00" in out
    assert "1 values outside engineering limits" in out
    h = historian(home)
    frame = h.read("2024-06-01", "2024-06-02", tags=["level", "pump", "inflow"], good_only=False)
    assert list(frame["level"]) == [5.5, 6.25, 7.0, 25.0]
    assert np.isnan(frame["pump"].iloc[1]) and np.isnan(frame["inflow"].iloc[2])  # not zeros
    long = h.read_long("2024-06-01", "2024-06-02", tags=["level"])
    assert list(long["quality"]) == [0, 0, 0, Quality.OUT_OF_RANGE]
    assert np.isnan(h.read("2024-06-01", "2024-06-02", tags=["level"])["level"].iloc[3])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_import_round_trip(plant, tmp_path, suffix):
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    index = pd.date_range("2024-06-01T23:59:00Z", periods=120, freq="500ms")  # crosses midnight
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "level": rng.uniform(0, 20, 120),
            "pump": rng.uniform(0, 10, 120),
            "inflow": rng.uniform(-5, 5, 120),
        },
        index=index,
    )
    data.iloc[5, 1] = np.nan
    data.iloc[7, 2] = np.nan
    src = tmp_path / "src.parquet"
    data.rename_axis("timestamp").reset_index().to_parquet(src)
    assert twin("import", plant, src, "--home", home_a) == 0
    out = tmp_path / f"out{suffix}"
    window = ("--start", "2024-06-01T23:00:00", "--end", "2024-06-02T01:00:00Z")
    assert twin("export", plant, *window, "-o", out, "--home", home_a) == 0
    assert twin("import", plant, out, "--home", home_b) == 0
    back = historian(home_b).read(
        "2024-06-01T23:00Z", "2024-06-02T01:00Z", tags=["level", "pump", "inflow"]
    )
    pd.testing.assert_frame_equal(
        back, data, check_freq=False, check_names=False, check_index_type=False
    )
    again = tmp_path / f"again{suffix}"
    assert twin("export", plant, *window, "-o", again, "--home", home_b) == 0
    assert out.read_bytes() == again.read_bytes() or suffix == ".parquet"


def test_export_tags_and_resample(plant, tmp_path):
    home = tmp_path / "home"
    assert twin("import", plant, write_csv(tmp_path / "in.csv", GOOD_CSV), "--home", home) == 0
    out = tmp_path / "r.csv"
    args = ("--start", "2024-06-01", "--end", "2024-06-01T00:00:10", "--tags", "level,pump")
    assert twin("export", plant, *args, "--resample", "2s", "-o", out, "--home", home) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["timestamp", "level", "pump"]
    assert list(table["level"]) == [5.875, 7.0]  # 25 is out of range: not averaged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timestamp,level,bogus\n2024-06-01T00:00:00Z,1,2\n", ["column 'bogus'", "unknown column"]),
        (
            "timestamp,level\n2024-06-01T00:00:00Z,1\nnot-a-time,2\n",
            ["row 2", "column 'timestamp'", "'not-a-time'"],
        ),
        (
            "timestamp,level,pump\n2024-06-01T00:00:00Z,1,2\n2024-06-01T00:00:01Z,1,two\n",
            ["row 2", "column 'pump'", "'two'"],
        ),
        ("level,pump\n1,2\n", ["no 'timestamp' column"]),
        ("timestamp,level\n1717200000000,1\n", ["row 1", "out of range (milliseconds?)"]),
        ("timestamp,level\n2024-06-01T00:00:00Z,1\n,2\n", ["row 2", "missing timestamp"]),
    ],
)
def test_bad_files_exit_2_name_row_and_column_and_store_nothing(
    plant, tmp_path, capsys, text, expected
):
    home = tmp_path / "home"
    # A good row first: it must not be stored either.
    src = write_csv(tmp_path / "bad.csv", text)
    assert twin("import", plant, src, "--home", home) == 2
    err = " ".join(capsys.readouterr().err.split())
    for fragment in expected:
        assert fragment in err
    assert "nothing was imported" in err
    assert historian(home).time_range() is None


def test_many_problems_are_collected_in_one_message(plant, tmp_path, capsys):
    rows = "\n".join(f"2024-06-01T00:00:{i:02d}Z,x{i}" for i in range(15))
    src = write_csv(tmp_path / "bad.csv", "timestamp,level\n" + rows)
    assert twin("import", plant, src, "--home", tmp_path / "home") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "15 problems" in err and "row 1," in err and "row 10," in err and "and 5 more" in err
    assert "row 11," not in err


def test_bad_export_options_exit_2_naming_the_option(plant, tmp_path, capsys):
    home = tmp_path / "home"
    assert (
        twin(
            "export",
            plant,
            "--start",
            "yesterday-ish",
            "--end",
            "2024-01-02",
            "-o",
            tmp_path / "x.csv",
            "--home",
            home,
        )
        == 2
    )
    assert "--start" in capsys.readouterr().err
    assert (
        twin(
            "export",
            plant,
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-01",
            "-o",
            tmp_path / "x.csv",
            "--home",
            home,
        )
        == 2
    )
    assert "--end" in capsys.readouterr().err
    assert (
        twin(
            "export",
            plant,
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--tags",
            "nope",
            "-o",
            tmp_path / "x.csv",
            "--home",
            home,
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err


def test_console_script_entry_point(plant, tmp_path):
    src = write_csv(tmp_path / "in.csv", GOOD_CSV)
    env_home = tmp_path / "env-home"
    run = subprocess.run(
        [sys.executable, "-m", "twin.cli", "import", str(plant), str(src)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "TWIN_HOME": str(env_home)},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "imported 4 rows" in run.stdout
    assert historian(env_home).time_range() is not None


def test_parquet_epoch_seconds_and_csv_byte_order_mark(plant, tmp_path):
    home = tmp_path / "home"
    src = tmp_path / "epoch.parquet"
    pd.DataFrame({"timestamp": [1717200000, 1717200001.5], "pump": [1.0, None]}).to_parquet(src)
    assert twin("import", plant, src, "--home", home) == 0
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftimestamp,level\n2024-06-01T00:00:05Z,3\n".encode())
    assert twin("import", plant, bom, "--home", home) == 0
    long = historian(home).read_long("2024-06-01", "2024-06-02")
    assert [str(t) for t in long["ts"]] == [
        "2024-06-01 00:00:00+00:00",
        "2024-06-01 00:00:05+00:00",
    ]
    assert list(long["tag"]) == ["pump", "level"]
