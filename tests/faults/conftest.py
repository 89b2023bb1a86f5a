"""Fixtures of the faults suite: one tiny trained twin of the mixer per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import mixer
from .procs import train_tiny


@pytest.fixture(scope="session")
def mixer_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixer_twin")
    spec = mixer.write_plant(root / "plant", "opc.tcp://127.0.0.1:4840/twin/")
    return train_tiny(root / "home", spec)
