"""Step-test campaigns: inside the MV bands and max_move, sized by the time constant; run on a simulator."""

from __future__ import annotations

import numpy as np
import pytest

from twin.historian import Historian
from twin.paths import Home
from twin.spec import load_spec
from twin.steptest import SteptestConfig, design_campaign, run_on_simulator

from .conftest import linear_spec


@pytest.mark.parametrize("kind", ["prbs", "gbn"])
def test_design_respects_bands_and_max_move(kind):
    spec = load_spec("four_tank")
    c = design_campaign(spec, SteptestConfig(kind=kind, seed=3))
    for i, tag in enumerate(spec.mvs):
        lo, hi = tag.operating_limits
        col = c.schedule[:, i]
        assert col.min() >= lo - 1e-9 and col.max() <= hi + 1e-9
        assert np.abs(np.diff(col)).max() <= tag.max_move + 1e-9
        assert c.summary()["mvs"][tag.name]["moves"] >= 10
    assert c.duration_s >= 3600
    assert c.hold_intervals * c.interval_s == pytest.approx(c.time_constant_s, rel=0.5)


def test_a_plant_without_simulator_only_gets_a_design(tmp_path):
    spec = linear_spec()
    c = design_campaign(spec, SteptestConfig(hours=0.5, time_constant_s=20.0))
    assert c.schedule.shape == (360, 1)
    with pytest.raises(Exception, match="no simulator"):
        run_on_simulator(Home.at(tmp_path), spec, c, progress=False)


def test_run_on_simulator_records_and_annotates_a_campaign(tmp_path):
    spec = load_spec("cstr")
    home = Home.at(tmp_path)
    c = design_campaign(spec, SteptestConfig(hours=0.25, seed=1))
    start, end = run_on_simulator(home, spec, c, seed=1, progress=False)
    with Historian(home.historian_dir("cstr")) as hist:
        frame = hist.read(start, end)
        notes = hist.annotations(kind="campaign")
    assert len(frame) == round(0.25 * 3600 / spec.plant.sample_period_s)
    assert frame["Tc"].nunique() > 3
    assert len(notes) == 1 and "steptest" in notes.iloc[0]["label"]
