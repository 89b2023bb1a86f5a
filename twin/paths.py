"""Where a twin home keeps its things (`--home DIR`, else `TWIN_HOME`, else ./twin-data)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "twin-data"
STATE_URL_ENV = "TWIN_STATE_URL"
"""A PostgreSQL URL that holds the state store instead of the home's SQLite file."""


def default_home() -> Path:
    return Path(os.environ.get("TWIN_HOME") or DEFAULT_HOME)


@dataclass(frozen=True)
class Home:
    """The folder that holds the historian, the state store and the model registry."""

    root: Path

    @classmethod
    def at(cls, root: Path | str | None = None) -> Home:
        path = Path(root) if root is not None else default_home()
        path = path.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def historian_dir(self, plant: str) -> Path:
        """Parquet segments of one plant: historian/plant=NAME/date=YYYY-MM-DD/ (Hive
        partitions, docs/historian.md). A home made before that layout keeps historian/NAME/."""
        legacy = self.root / "historian" / plant
        return legacy if legacy.is_dir() else self.root / "historian" / f"plant={plant}"

    @property
    def state_db(self) -> Path:
        """SQLite state store: proposals, approvals, users, audit."""
        return self.root / "state.db"

    def state_target(self, url: str | None = None) -> Path | str:
        """Where the state store is: `url`, else `TWIN_STATE_URL` (`twin --state-url`), else the
        SQLite file `state_db`. Every process opens its store from here (`Store.open`)."""
        return url or os.environ.get(STATE_URL_ENV) or self.state_db

    def models_dir(self, plant: str) -> Path:
        """Model registry of one plant: one folder per version."""
        return self.root / "models" / plant

    @property
    def certs_dir(self) -> Path:
        """OPC-UA application certificates made by `twin certs`."""
        return self.root / "certs"

    @property
    def runs_dir(self) -> Path:
        """Logs and PID files of background processes (demo, retraining)."""
        return self.root / "runs"

    @property
    def keys_dir(self) -> Path:
        """Audit HMAC keys (`TWIN_KEYS_DIR` puts them outside the home, e.g. another owner's folder)."""
        env = os.environ.get("TWIN_KEYS_DIR")
        return Path(env).expanduser() if env else self.root / "keys"

    @property
    def audit_anchor(self) -> Path:
        """Append-only file of audit heads (`TWIN_AUDIT_ANCHOR` moves it, e.g. to an append-only mount)."""
        env = os.environ.get("TWIN_AUDIT_ANCHOR")
        return Path(env).expanduser() if env else self.root / "audit.anchor"

    @property
    def trust_dir(self) -> Path:
        """OPC-UA server certificates trusted by `twin certs trust`."""
        return self.certs_dir / "trusted"

    @property
    def rejected_dir(self) -> Path:
        """OPC-UA server certificates refused as unknown, kept so they can be inspected and trusted."""
        return self.certs_dir / "rejected"
