"""`twin generate`: simulated data under excitation, into a real historian, through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plant_folders import copy_plant

from twin.cli import main
from twin.errors import BadInput
from twin.generate import generate, generate_into
from twin.historian import Historian
from twin.paths import Home
from twin.sample import Quality

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_long_frame_shape_types_and_clock(four_tank_spec) -> None:
    df = generate(four_tank_spec, 0.1, seed=1, start=START, progress=False)
    n = 360  # 0.1 h at 1 s
    assert len(df) == n * len(four_tank_spec.tags)
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["value"].dtype == np.float64 and df["quality"].dtype == np.int8
    times = df["ts"].unique()
    assert times[0] == pd.Timestamp(START) and times[-1] == pd.Timestamp(
        START + timedelta(seconds=n - 1)
    )
    assert set(df["tag"]) == set(four_tank_spec.tag_names)


def test_mvs_move_only_at_control_intervals_within_band_and_max_move(cstr_spec) -> None:
    df = generate(cstr_spec, 2.0, "prbs", seed=3, start=START, progress=False)
    tc = df[df["tag"] == "Tc"].set_index("ts")["value"]
    per = cstr_spec.plant.samples_per_interval
    values = tc.to_numpy()
    changes = np.flatnonzero(np.diff(values)) + 1
    assert len(changes) > 20 and np.all(changes % per == 0)
    lo, hi = cstr_spec.tag("Tc").operating_limits
    assert values.min() >= lo and values.max() <= hi
    assert values.min() == lo and values.max() == hi  # PRBS reaches both edges
    assert np.max(np.abs(np.diff(values))) <= cstr_spec.tag("Tc").max_move


def test_quality_flags_out_of_range_values(cstr_spec) -> None:
    df = generate(cstr_spec, 2.0, "prbs", seed=3, start=START, progress=False, band="engineering")
    limits = {t.name: t.limits for t in cstr_spec.tags}
    lo = df["tag"].map(lambda n: limits[n][0])
    hi = df["tag"].map(lambda n: limits[n][1])
    outside = (df["value"] < lo) | (df["value"] > hi)
    assert outside.any()  # runaways past the 400 K limit happen with the wide band
    assert (df.loc[outside, "quality"] == Quality.OUT_OF_RANGE).all()
    assert (df.loc[~outside, "quality"] == Quality.GOOD).all()


def test_cstr_data_reach_the_middle_region_without_living_in_runaway(cstr_spec) -> None:
    df = generate(cstr_spec, 6.0, "prbs", seed=0, start=START, progress=False)
    wide = df.pivot(index="ts", columns="tag", values="value")
    t_limit = cstr_spec.tag("T").limits[1]
    assert (wide["T"] > t_limit).mean() < 0.03  # a few informative excursions
    assert ((wide["T"] > 340) & (wide["T"] < 360)).mean() > 0.01  # near the unstable middle
    assert (wide["Ca"] < 0.6).mean() > 0.02 and (wide["Ca"] > 0.9).mean() > 0.1


def test_same_seed_same_data(four_tank_spec) -> None:
    a = generate(four_tank_spec, 0.05, "steps", "inflow_step", 5, START, progress=False)
    b = generate(four_tank_spec, 0.05, "steps", "inflow_step", 5, START, progress=False)
    c = generate(four_tank_spec, 0.05, "steps", "inflow_step", 6, START, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert not a["value"].equals(c["value"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": 0.0}, "--hours 0.0 must be a positive number"),
        ({"excitation": "sine"}, "--excitation 'sine' must be one of"),
        ({"scenario": "nope"}, "no scenario 'nope'"),
        ({"start": datetime(2026, 1, 1)}, "needs a timezone"),
        ({"band": "wide"}, "--band 'wide'"),
    ],
)
def test_bad_arguments_are_bad_input(cstr_spec, kwargs, message) -> None:
    args = {"hours": 0.01, "progress": False} | kwargs
    with pytest.raises(BadInput, match=message):
        generate(cstr_spec, **args)


def test_generate_into_a_real_historian(tmp_path: Path, four_tank_spec) -> None:
    home = Home.at(tmp_path)
    frame = generate(four_tank_spec, 0.1, "gbn", None, 2, START, progress=False)
    written = generate_into(home, four_tank_spec, 0.1, "gbn", None, 2, START, progress=False)
    assert written == len(frame)
    with Historian(home.historian_dir("four_tank")) as h:
        first, last = h.time_range()
        assert first == START and last == START + timedelta(seconds=359)
        stored = h.read(START, START + timedelta(hours=1))
        expected = frame.pivot(index="ts", columns="tag", values="value")
        np.testing.assert_allclose(stored[expected.columns].to_numpy(), expected.to_numpy())
        campaigns = h.annotations(kind="campaign")
        assert len(campaigns) == 1 and "gbn" in campaigns["label"].iloc[0]


def test_cli_generate_prints_values_and_time_range(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "generate",
            "cstr",
            "--hours",
            "0.5",
            "--seed",
            "3",
            "--start",
            "2026-01-01T00:00:00Z",
            "--scenario",
            "feed_temp_step",
            "--excitation",
            "steps",
            "--home",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "wrote 1,800 values of 5 tags for cstr" in out
    assert "2026-01-01T00:00:00+00:00 .. 2026-01-01T00:29:55+00:00" in out
    with Historian(Home.at(tmp_path).historian_dir("cstr")) as h:
        assert h.time_range() == (
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 1, 0, 29, 55, tzinfo=UTC),
        )


def test_cli_with_a_plant_outside_the_repository(tmp_path: Path, capsys) -> None:
    toml = copy_plant("four_tank", tmp_path / "elsewhere" / "tanks", "river_tanks")
    assert main(["plants", str(toml)]) == 0
    assert "river_tanks" in capsys.readouterr().out
    code = main(["generate", str(toml), "--hours", "0.02", "--home", str(tmp_path / "home")])
    assert code == 0
    assert "wrote 432 values of 6 tags for river_tanks" in capsys.readouterr().out
    assert (tmp_path / "home" / "historian" / "plant=river_tanks").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hours", "-1"], "--hours -1.0 must be a positive number"),
        (["--hours", "1", "--excitation", "sine"], "--excitation 'sine'"),
        (["--hours", "1", "--scenario", "nope"], "no scenario 'nope'"),
        (["--hours", "1", "--start", "yesterday"], "--start 'yesterday' is not an ISO 8601 time"),
        (["--hours", "1", "--band", "wide"], "--band 'wide'"),
    ],
)
def test_cli_bad_generate_arguments_exit_2(tmp_path: Path, capsys, args, message) -> None:
    assert main(["generate", "cstr", *args, "--home", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_generate_without_simulator_exits_2(tmp_path: Path, capsys) -> None:
    toml = copy_plant("cstr", tmp_path / "p", "real_reactor")
    (tmp_path / "p" / "simulator.py").unlink()
    assert main(["plants", str(toml)]) == 0
    assert "real_reactor" in capsys.readouterr().out
    assert main(["generate", str(toml), "--hours", "1", "--home", str(tmp_path / "h")]) == 2
    assert "'real_reactor' has no simulator" in capsys.readouterr().err
