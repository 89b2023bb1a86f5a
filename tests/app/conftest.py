"""Fixtures of the control-room tests: one real twin home per session (training takes ~10 s)."""

from __future__ import annotations

import pytest
from room_homes import BuiltHome, build_home


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltHome:
    return build_home(tmp_path_factory.mktemp("room-home"))


@pytest.fixture
def room_env(built: BuiltHome, monkeypatch: pytest.MonkeyPatch) -> BuiltHome:
    monkeypatch.setenv("TWIN_HOME", str(built.home.root))
    monkeypatch.setenv("TWIN_PLANT", built.spec.name)
    return built
