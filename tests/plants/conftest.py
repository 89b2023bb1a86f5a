"""Fixtures of the simulator tests: the built-in specs."""

from __future__ import annotations

import pytest

from twin.spec import PlantSpec, load_spec


@pytest.fixture(scope="session")
def cstr_spec() -> PlantSpec:
    return load_spec("cstr")


@pytest.fixture(scope="session")
def four_tank_spec() -> PlantSpec:
    return load_spec("four_tank")
