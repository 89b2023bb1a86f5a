"""`twin propose` end to end: a real historian, a real (small, quickly trained) twin, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.cli import main
from twin.data import DataConfig
from twin.historian import Historian
from twin.model.config import ModelConfig
from twin.paths import Home
from twin.sample import utcnow
from twin.spec import load_spec
from twin.train import TrainConfig, train_plant

PLANT_TOML = """
[plant]
name = "tiny"
sample_period_s = 1.0
control_interval_s = 5.0

[[tags]]
name = "y"
role = "cv"
limits = [-50.0, 50.0]
operating = [-20.0, 20.0]

[[tags]]
name = "u"
role = "mv"
limits = [-5.0, 5.0]
max_move = 1.0

[objective]
setpoints = { y = 6.0 }

[safety]
max_staleness_s = 600
"""


def _history(minutes: float, seed: int = 0) -> pd.DataFrame:
    """A first-order plant y+ = 0.9 y + 0.2 u under a random MV, ending now."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60)
    y, u, rows = 0.0, 0.0, []
    for k in range(n):
        if k % 5 == 0 and rng.random() < 0.5:
            u = float(np.clip(u + rng.choice([-1.0, 1.0]), -5, 5))
        y = 0.9 * y + 0.2 * u
        rows.append((y + 0.01 * rng.standard_normal(), u))
    end = pd.Timestamp(utcnow()).floor("s")
    idx = pd.date_range(end=end, periods=n, freq="1s", name="timestamp")
    return pd.DataFrame(rows, index=idx, columns=["y", "u"])


@pytest.fixture(scope="module")
def small_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("propose")
    spec_path = root / "plant.toml"
    spec_path.write_text(PLANT_TOML)
    spec = load_spec(spec_path)
    home = Home.at(root / "home")
    frame = _history(90)
    with Historian(home.historian_dir(spec.name)) as hist:
        hist.append_wide(frame)
    train_plant(
        home,
        spec,
        ModelConfig(latent_dim=8, hidden=32, action_dim=4, readout_hidden=16),
        DataConfig(horizon=6),
        TrainConfig(
            epochs=6,
            steps_per_epoch=20,
            max_seconds=20,
            obs_max_seconds=5,
            progress=False,
            min_effective_rank=1.0,
        ),
        frame=frame,
    )
    return spec_path, home.root


@pytest.mark.timeout(180)
def test_propose_json_respects_limits(small_home: tuple[Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    spec_path, home = small_home
    assert main(["propose", str(spec_path), "--home", str(home), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "code" not in out, out  # a fresh, in-range window: a proposal, not a refusal
    u_now, u_new = out["current"]["u"], out["proposed"]["u"]
    assert -5.0 <= u_new <= 5.0 and abs(u_new - u_now) <= 1.0 + 1e-9
    assert out["model_version"] and out["predicted"]["y"]["mean"] and out["hold"]["y"]["mean"]
    assert out["setpoints"] == {"y": 6.0}


@pytest.mark.timeout(180)
def test_propose_table_and_reasons(small_home: tuple[Path, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec_path, home = small_home
    assert main(["propose", str(spec_path), "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "proposal" in text and ("MV moves" in text or "out of the twin" in text)
    # A home without a model says so, and why.
    assert main(["propose", str(spec_path), "--home", str(tmp_path / "empty"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["code"] == "no_model" and "twin train" in out["reason"]


def test_bench_rejects_an_unknown_name(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["bench", "nonsense"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
