"""Both state-store backends for the tests: SQLite, and PostgreSQL on a real server.

`TWIN_TEST_POSTGRES_URL` names a database of a throwaway cluster (`scripts/pg_test_cluster.sh`,
started by `.ci/run`); each test gets its own schema in it. Without the URL the PostgreSQL
variants are skipped locally and fail in CI (CI=true, or TWIN_TEST_REQUIRE_POSTGRES=1 as
`.ci/run` sets), so CI never passes without them.

A test module runs on both backends by importing the fixtures:
`from tests.state import backends`, then `store = backends.store` (and `backend`); a test of
whole processes takes `state_url = backends.state_url` (and `backend`) instead.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from twin.paths import Home
from twin.state import Store

BACKENDS = ("sqlite", "postgresql")
URL_ENV = "TWIN_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The test server's URL; fails in CI and skips elsewhere when there is none."""
    url = os.environ.get(URL_ENV)
    if url:
        return url
    message = f"{URL_ENV} is not set: start a server with scripts/pg_test_cluster.sh"
    required = (os.environ.get(k, "").lower() for k in ("CI", "TWIN_TEST_REQUIRE_POSTGRES"))
    if any(v in ("1", "true", "yes") for v in required):
        pytest.fail(f"CI must test the PostgreSQL state store: {message}")
    pytest.skip(message)


def fresh_schema_url(base: str) -> str:
    """A URL whose connections use a new, empty schema of the test database."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-c search_path={name}')}"


def new_target(backend: str, tmp_path: Path) -> str | Path:
    """An empty store's target: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        return tmp_path / "state.db"
    return fresh_schema_url(postgres_url())


def open_store(backend: str, tmp_path: Path) -> Store:
    """An empty store whose twin home (audit keys, anchor) is tmp_path."""
    return Store(new_target(backend, tmp_path), home=Home(tmp_path))


def reopen(store: Store) -> Store:
    """Another connection to the same store, as a second process would open it."""
    return Store(store.target, home=store.home)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        postgres_url()
    return str(request.param)


@pytest.fixture
def state_url(backend: str, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """For tests that start processes or open stores by home (`Store.open`): None on SQLite
    (each home's state.db); on PostgreSQL a fresh schema, set as TWIN_STATE_URL for the test
    and the processes it starts."""
    if backend == "sqlite":
        monkeypatch.delenv("TWIN_STATE_URL", raising=False)
        return None
    url = fresh_schema_url(postgres_url())
    monkeypatch.setenv("TWIN_STATE_URL", url)
    return url


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    s = open_store(backend, tmp_path)
    yield s
    s.close()


class Raw:
    """A connection beside the store's, as someone with database access would use it."""

    def __init__(self, store: Store) -> None:
        self.pg = store.backend == "postgresql"
        if self.pg:
            import psycopg

            self.c: Any = psycopg.connect(str(store.target), autocommit=True)
        else:
            self.c = sqlite3.connect(store.path, isolation_level=None)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.pg:
            from twin.state.postgres import translate

            sql, _ = translate(sql, frozenset(), bool(params))
            return self.c.execute(sql, params or None)
        return self.c.execute(sql, params)

    def drop_audit_triggers(self) -> Raw:
        for op in ("update", "delete") + (("truncate",) if self.pg else ()):
            self.c.execute(f"DROP TRIGGER audit_no_{op}" + (" ON audit" if self.pg else ""))
        return self

    def close(self) -> None:
        self.c.close()
