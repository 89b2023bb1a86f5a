"""Shared fixtures: a small linear plant whose true response is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.spec import PlantSpec, parse_spec

LINEAR_SPEC = {
    "plant": {"name": "lin", "sample_period_s": 1.0, "control_interval_s": 5.0},
    "tags": [
        {"name": "y1", "role": "cv", "limits": [-50.0, 50.0]},
        {"name": "y2", "role": "cv", "limits": [-50.0, 50.0]},
        {"name": "d", "role": "dv", "limits": [-10.0, 10.0]},
        {"name": "u", "role": "mv", "limits": [-5.0, 5.0], "max_move": 2.0},
    ],
}

# Per-sample dynamics: x+ = A x + B u + E d; y = x + noise. Stable, with a slow and a fast mode.
A = np.array([[0.95, 0.0], [0.03, 0.9]])
B = np.array([0.1, 0.05])
E = np.array([0.02, 0.0])


def linear_spec() -> PlantSpec:
    return parse_spec(LINEAR_SPEC)


def simulate_linear(
    hours: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    missing: float = 0.0,
    disturbance: bool = True,
) -> pd.DataFrame:
    """A wide frame of the linear plant under a random binary MV that moves every control interval."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    x = np.zeros(2)
    d = 0.0
    rows = np.zeros((n, 4))
    u = 0.0
    for k in range(n):
        if k % 5 == 0 and rng.random() < 0.5:
            u = float(np.clip(u + rng.choice([-2.0, 2.0]), -5, 5))
        if disturbance:
            d = 0.995 * d + 0.05 * rng.standard_normal()
        x = A @ x + B * u + E * d
        rows[k] = [x[0], x[1], d, u]
    rows[:, :2] += noise * rng.standard_normal((n, 2))
    if missing:
        holes = rng.random((n, 3)) < missing
        rows[:, :3][holes] = np.nan
    idx = pd.date_range("2026-01-01", periods=n, freq="1s", tz="UTC", name="timestamp")
    return pd.DataFrame(rows, index=idx, columns=["y1", "y2", "d", "u"])


LINEAR_TOML = """
[plant]
name = "lin"
sample_period_s = 1.0
control_interval_s = 5.0

[[tags]]
name = "y1"
role = "cv"
limits = [-50.0, 50.0]

[[tags]]
name = "y2"
role = "cv"
limits = [-50.0, 50.0]

[[tags]]
name = "d"
role = "dv"
limits = [-10.0, 10.0]

[[tags]]
name = "u"
role = "mv"
limits = [-5.0, 5.0]
max_move = 2.0
"""


def tiny_configs():
    """Model, data and train configs for runs of a few seconds."""
    from twin.data import DataConfig
    from twin.model.config import ModelConfig
    from twin.train import TrainConfig

    return (
        ModelConfig(latent_dim=8, hidden=32, action_dim=8, readout_hidden=16),
        DataConfig(horizon=5, window_intervals=2),
        TrainConfig(
            epochs=6,
            steps_per_epoch=10,
            batch_size=32,
            max_seconds=20,
            obs_max_seconds=5,
            val_anchors=128,
            progress=False,
            patience=100,
        ),
    )


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small matrices on a shared machine: one thread is far faster than two that spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lin_spec() -> PlantSpec:
    return linear_spec()
