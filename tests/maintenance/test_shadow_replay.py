"""Shadow scoring while the active twin controls (`twin serve --mode auto --shadow V`): the MVs
move every interval, so neither twin's recorded hold prediction applies; both twins are replayed
under the MVs the plant really got. Real tiny twins on the four_tank's generated PRBS history
(its MVs move as a controlling twin's would), real historian and state store."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.support.tiny import TINY_MODEL, tiny_training
from twin import registry
from twin.data import DataConfig
from twin.generate import generate_into
from twin.health.drift import normalised_errors
from twin.health.monitor import HORIZON, expected_rmse
from twin.historian import Historian
from twin.paths import Home
from twin.serve.shadow import replay, score
from twin.spec import load_spec
from twin.state import Store
from twin.train import train_plant
from twin.window import window_rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PLANT = "four_tank"


def test_moved_intervals_are_replayed_under_the_applied_mvs(tmp_path: Path) -> None:
    home = Home.at(tmp_path / "home")
    spec = load_spec(PLANT)
    generate_into(home, spec, hours=1.5, seed=0, progress=False)
    with Historian(home.historian_dir(spec.name)) as h:
        start, end = h.time_range()
        frame = h.read(start, end + timedelta(seconds=1))
    train = tiny_training(epochs=3, steps_per_epoch=10, batch_size=16, max_seconds=20)
    v1 = train_plant(home, spec, TINY_MODEL, DataConfig(horizon=5), train, frame=frame)
    # The candidate is an exact copy of the active twin: a fair score cannot tell them apart.
    models = home.models_dir(spec.name)
    shutil.copytree(models / v1, models / "v002")
    assert registry.versions(home, spec) == [v1, "v002"]

    step = timedelta(seconds=spec.plant.control_interval_s)
    times = [start + timedelta(minutes=20) + k * step for k in range(40)]
    with Store.open(home) as store:
        for ts in times:
            store.add_shadow(
                plant=spec.name,
                version="v002",
                active_version=v1,
                active_proposal_id=None,
                data_ts=ts,
                mv_values={"v1": 3.0, "v2": 3.0},
                # No hold predictions recorded: a held interval cannot be scored, a moved one
                # is scored from the replay alone.
                payload={"hold": {}, "active_hold": {}},
            )
        replayed = score(home, spec, store, "v002")
        skipped = score(home, spec, store, "v002", replay_moved=False)

    # PRBS moves the MVs within nearly every 5-interval horizon: those intervals are replayed;
    # without the replay they are left out.
    assert replayed.replayed >= 30 and replayed.scored == replayed.replayed
    assert skipped.replayed == 0 and skipped.scored == 0
    assert replayed.candidate_multi_step is not None
    # Same twin, same rule: the comparison is fair (no gain either way).
    assert replayed.active_multi_step == pytest.approx(replayed.candidate_multi_step)
    assert replayed.improvement == pytest.approx(0.0, abs=1e-9)
    assert replayed.to_dict()["replayed"] == replayed.replayed

    # The replay under the moves the plant got predicts the plant better than the same twin
    # assuming its MVs held (what scoring a twin on moves that were not made would amount to).
    model = registry.load_version(home, spec, v1)
    rmse = expected_rmse(home, spec, v1)
    spi = spec.plant.samples_per_interval
    under_moves, under_hold = [], []
    for ts in times:
        window = window_rows(frame, spec, list(model.tag_names), model.window, ts)
        after = window_rows(frame, spec, list(model.mv_names), HORIZON * spi, ts + HORIZON * step)
        applied = after[spi - 1 :: spi]
        held = np.tile(
            window[-1, [list(model.tag_names).index(m) for m in model.mv_names]], (HORIZON, 1)
        )
        actual = {
            cv: [
                float(frame[cv].loc[: ts + (k + 1) * step].dropna().iloc[-1])
                for k in range(HORIZON)
            ]
            for cv in rmse
        }
        for preds, out in (
            (replay(model, window, applied), under_moves),
            (replay(model, window, held), under_hold),
        ):
            e = normalised_errors({cv: preds[cv] for cv in rmse}, actual, rmse)
            out.append(sum(e) / len(e))
    assert np.mean(under_moves) < np.mean(under_hold), (np.mean(under_moves), np.mean(under_hold))
