"""A real twin home for the control-room tests: generated cstr history, a tiny trained twin,
users of every role, and proposals made by the real planner on that history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.tiny import TINY_MODEL
from twin import api
from twin.auth import Role, Session
from twin.data import DataConfig
from twin.generate import generate_into
from twin.historian import Historian
from twin.paths import Home
from twin.spec import PlantSpec, load_spec
from twin.state import Store
from twin.train import TrainConfig, train_plant
from twin.users import create_user

PASSWORD = "correct horse battery"
TINY_DATA = DataConfig(horizon=6)
TINY_TRAIN = TrainConfig(
    epochs=3,
    steps_per_epoch=10,
    batch_size=32,
    max_seconds=15,
    obs_max_seconds=5,
    progress=False,
    min_effective_rank=0.5,
)


@dataclass(frozen=True)
class BuiltHome:
    home: Home
    spec: PlantSpec
    users: dict[str, Session]
    version: str
    first: datetime
    last: datetime
    proposals: list[int]
    """Stored proposal ids, oldest first: approved, rejected, then the pending one."""


def add_users(store: Store) -> dict[str, Session]:
    """A user of every role, logged in (named after the role).

    The home's security.toml gives these sessions a day: the module's tests share them for
    longer than the default idle timeout (expiry has its own tests in tests/runtime).
    """
    (Path(store.path).parent / "security.toml").write_text(
        "idle_timeout_s = 86400\nreauth_s = 86400\n"
    )
    out = {}
    for r in Role:
        create_user(store, r.name.lower(), r, PASSWORD, actor="test")
        out[r.name.lower()] = api.log_in(store, r.name.lower(), PASSWORD)
    return out


def train_tiny(home: Home, spec: PlantSpec) -> str:
    with Historian(home.historian_dir(spec.name)) as h:
        first, last = h.time_range()
        frame = h.read(first, last + timedelta(seconds=1), tags=spec.tag_names)
    return train_plant(home, spec, TINY_MODEL, TINY_DATA, TINY_TRAIN, frame=frame)


def store_proposal(store: Store, spec: PlantSpec, proposal, mode: str = "supervised") -> int:
    """Store a planner Proposal the way the runtime does (payload = to_dict + spec path + live MVs)."""
    payload = proposal.to_dict()
    payload["spec_path"] = str(spec.path)
    payload["mv_live"] = dict(proposal.current)
    return store.add_proposal(
        plant=spec.name,
        mv_values=dict(proposal.proposed),
        payload=payload,
        data_ts=proposal.data_ts,
        expires_at=proposal.expires_at,
        model_version=proposal.model_version,
        mode=mode,
    )


def plan_at(home: Home, spec: PlantSpec, at: datetime):
    """A real proposal from the active twin and the planner at a moment of the history."""
    from app.logic.whatif import window_at
    from twin import registry
    from twin.plan.controller import PlanningController

    model = registry.load_active(home, spec)
    with Historian(home.historian_dir(spec.name)) as h:
        window = window_at(h, spec, list(model.tag_names), int(model.window), at)
    proposal = PlanningController(model, spec).decide(window, at, at)
    assert hasattr(proposal, "proposed"), f"no proposal at {at}: {proposal}"
    return proposal


def build_home(root: Path, hours: float = 3.0) -> BuiltHome:
    from twin import api

    home = Home.at(root)
    spec = load_spec("cstr")
    start = (datetime.now(UTC) - timedelta(hours=hours)).replace(microsecond=0)
    generate_into(home, spec, hours, seed=0, start=start, progress=False)
    version = train_tiny(home, spec)
    with Historian(home.historian_dir(spec.name)) as h:
        first, last = h.time_range()
    with Store.open(home) as store:
        users = add_users(store)
        ids = []
        for minutes_back in (30, 20, 10):
            ids.append(
                store_proposal(
                    store, spec, plan_at(home, spec, last - timedelta(minutes=minutes_back))
                )
            )
            if len(ids) == 1:
                api.approve(store, ids[0], users["operator"], "looks right")
            elif len(ids) == 2:
                api.reject(
                    store, ids[1], users["engineer"], "too aggressive before the shift change"
                )
    return BuiltHome(home, spec, users, version, first, last, ids)


class ToyModel:
    """A linear world model with the twin's verbs: each CV settles towards gain x MV.

    Latent = the CVs themselves; used where a test needs to know exactly what the twin predicts.
    """

    def __init__(self, spec: PlantSpec, gains: dict[str, float], window: int = 4) -> None:
        import torch

        self.spec = spec
        self.tag_names = spec.tag_names
        self.cv_names = [t.name for t in spec.cvs]
        self.mv_names = [t.name for t in spec.mvs]
        self.window = window
        self.version = "toy"
        self.quantile_levels = (0.05, 0.95)
        self.ood_threshold = float("inf")
        self.gain = torch.tensor([gains[n] for n in self.cv_names], dtype=torch.float32)
        self._cols = [self.tag_names.index(n) for n in self.cv_names]

    def encode(self, window, mask=None):
        return window[:, -1, self._cols]  # (B, n_cv)

    def rollout(self, z, u):
        import torch

        out, cur = [], z
        for k in range(u.shape[1]):
            cur = 0.5 * cur + 0.5 * self.gain * u[:, k, :1]  # (B, n_cv)
            out.append(cur)
        return torch.stack(out, 1)  # (B, H, n_cv)

    def readout(self, z):
        import torch

        return z, torch.stack([z - 0.01, z + 0.01], -1)

    def ood_score(self, z):
        import torch

        return torch.zeros(z.shape[0])
