"""Real processes of the faults suite: a tiny trained twin of the mixer, and `twin serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.tiny import TINY_MODEL, tiny_training
from twin.paths import Home
from twin.spec import PlantSpec


def train_tiny(home: Path, spec: PlantSpec) -> Path:
    """A deliberately small twin of the mixer (seconds to train); returns its models folder."""
    from twin.data import DataConfig
    from twin.generate import generate_into
    from twin.train import train_plant

    h = Home.at(home)
    generate_into(h, spec, hours=2.0, seed=0, progress=False)
    train = tiny_training(
        epochs=3, steps_per_epoch=8, batch_size=16, max_seconds=20, obs_max_seconds=5
    )
    train_plant(h, spec, TINY_MODEL, DataConfig(horizon=5), train)
    return h.models_dir(spec.name)


def install_models(models: Path, home: Path, plant: str) -> None:
    """A fresh home holding only the trained twin: the runtime's history starts empty."""
    shutil.copytree(models, Home.at(home).models_dir(plant))


def start_serve(
    spec: PlantSpec, home: Path, log: Path, *, mode: str = "auto"
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "twin.cli", "serve", str(spec.path), "--mode", mode]
    args += ["--source", "opcua", "--home", str(home)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = log.open("ab")
    return subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
