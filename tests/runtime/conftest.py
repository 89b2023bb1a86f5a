"""Fixtures of the runtime tests: a fresh state store and a logged-in user of every role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twin import api
from twin.auth import Role, Session
from twin.spec import load_spec
from twin.state import Store
from twin.users import create_user

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def users(store: Store) -> dict[str, Session]:
    """A session of each role, keyed by role name (the user has the same name)."""
    out = {}
    for r in Role:
        create_user(store, r.name.lower(), r, PASSWORD, actor="test")
        out[r.name.lower()] = api.log_in(store, r.name.lower(), PASSWORD)
    return out


@pytest.fixture
def cstr():
    return load_spec("cstr")


def add_pending(
    store: Store, plant: str = "cstr", values: dict | None = None, ttl_s: float = 60.0
) -> int:
    now = datetime.now(UTC)
    return store.add_proposal(
        plant=plant,
        mv_values=values or {"Tc": 301.0},
        payload={"summary": "test", "mv_live": {"Tc": 300.0}},
        data_ts=now,
        expires_at=now + timedelta(seconds=ttl_s),
        model_version="v1",
        mode="supervised",
    )
