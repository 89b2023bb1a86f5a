"""A plant defined outside the repository, as a new user brings one (issue 11): a spec and
hours of excitation history as CSV, `twin import`, `twin train` with the default recipe. The
twin must beat ARX and persistence at every horizon on the held-out block, and the plant
held still at mid-band must stay in distribution (no OOD refusal for an hour).

Shortened for CI (3 h, 8 epochs: jepa h1 0.048 vs ARX 0.074 locally; 4 epochs left h1 at
0.0739 vs 0.0744, too close to hold across machines); the full figure (12 h, defaults, 3 seeds) is
`python benchmarks/predict.py --outside`, in benchmarks/results/predict_outside.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin import registry
from twin.cli import main
from twin.paths import Home
from twin.plan.gating import ood_ratio
from twin.spec import load_spec

from .outside_plant.simulate import simulate, write_csv

SPEC = Path(__file__).parent / "outside_plant" / "plant.toml"
CI_HOURS = 3.0
CI_EPOCHS = 8


@pytest.mark.timeout(600)
def test_default_recipe_on_a_plant_from_outside_beats_arx_and_persistence(tmp_path):
    csv = write_csv(tmp_path / "history.csv", CI_HOURS, seed=0)
    base = ["--home", str(tmp_path)]
    assert main(["import", str(SPEC), str(csv), *base]) == 0
    assert main(["train", str(SPEC), "--epochs", str(CI_EPOCHS), *base]) == 0
    spec = load_spec(str(SPEC))
    card = registry.load_checkpoint(Home.at(tmp_path), spec)["card"]
    models = card["evaluation"]["models"]
    for h in map(str, card["evaluation"]["horizons"]):
        jepa = models["jepa"]["nrmse"][h]
        rivals = {m: models[m]["nrmse"][h] for m in ("arx", "persistence")}
        assert all(jepa < v for v in rivals.values()), (h, jepa, rivals)

    # Held still at mid-band (inside what the excitation covered) for an hour: no refusal.
    tw = registry.load_active(Home.at(tmp_path), spec)
    rows = simulate(1.0, seed=5, excite=False).reindex(columns=spec.tag_names).to_numpy()
    spi, w = spec.plant.samples_per_interval, tw.window
    ends = np.arange(w - 1, len(rows), spi)
    ratios = np.array([ood_ratio(tw, rows[e - w + 1 : e + 1]) for e in ends])
    assert len(ends) >= 100
    assert (ratios <= 1).all(), (int((ratios > 1).sum()), float(ratios.max()))
