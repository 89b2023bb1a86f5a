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


def test_the_twin_is_saved_with_observer_gains_that_propose_and_serve_use(
    small_home: tuple[Path, Path], tmp_path: Path
) -> None:
    """Registering a twin fits the disturbance observer's gains on its validation block and
    stores them with it; `twin propose` and the runtime's proposer plan with them. A version
    saved before gains were stored loads with the planner's default gains."""
    import shutil

    import torch

    from twin import registry
    from twin.plan.propose import twin_controller
    from twin.plan.settings import PlannerConfig
    from twin.serve.proposer import TwinProposer

    spec_path, root = small_home
    spec = load_spec(spec_path)
    shutil.copytree(root, tmp_path / "home")  # this test adds a version: keep the module's home
    home = Home.at(tmp_path / "home")
    ckpt = registry.load_checkpoint(home, spec)
    saved = ckpt["observer"]
    assert (
        saved["source"].startswith("fitted on ") and "held-out control intervals" in saved["source"]
    )
    assert all(0.05 <= g <= 1.0 for g in saved["latent"] + saved["output"])
    assert len(saved["output"]) == len(spec.cvs)
    card = json.loads((home.models_dir(spec.name) / ckpt["version"] / "card.json").read_text())
    assert card["observer"] == saved

    gains = twin_controller(home, spec).observer.gains  # what `twin propose` plans with
    assert gains.to_dict() == saved
    proposer = TwinProposer(home, spec)
    proposer.refresh()
    assert proposer.observer_gains.to_dict() == saved

    # An older version: its checkpoint has no gains; it loads, with the planner's defaults.
    old = home.models_dir(spec.name) / "v002"
    old.mkdir()
    legacy = {k: v for k, v in ckpt.items() if k != "observer"}
    legacy["version"] = "v002"
    torch.save(legacy, old / "model.pt")
    registry.promote(home, spec, "v002")
    defaults = twin_controller(home, spec).observer.gains
    assert defaults.source == "planner settings"
    planner = PlannerConfig()
    assert defaults.latent.tolist() == [planner.observer_latent_gain]
    assert defaults.output.tolist() == [planner.observer_output_gain]
    proposer.refresh()
    assert proposer.version == "v002" and proposer.observer_gains.source == "planner settings"


def test_bench_passes_further_options_to_the_script(capfd) -> None:  # type: ignore[no-untyped-def]
    # The script's own argument parser sees them: this one refuses an option it does not have.
    assert main(["bench", "tep_control", "--no-such-option", "3"]) == 1
    err = capfd.readouterr().err
    assert "unrecognized arguments: --no-such-option 3" in err
    assert "benchmark 'tep_control' failed with exit code 2" in err
