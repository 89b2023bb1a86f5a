"""Fixtures of the control-room tests: one real twin home per session (training takes ~10 s)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

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


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Streamlit's script runner (AppTest) installs the page script as sys.modules["__main__"]
    and leaves it there; a later test that spawns processes would make every child re-run the
    control room's main.py. Put the real __main__ back after each test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
