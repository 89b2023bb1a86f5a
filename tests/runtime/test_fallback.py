"""When the twin abstains, the spec's fallback acts through the same approval, guard and audit."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from pathlib import Path

import pytest

from twin import audit, registry
from twin.paths import Home
from twin.plan.proposal import NoProposal
from twin.serve import Runtime, RuntimeConfig, TwinProposer
from twin.serve.connections import open_connections
from twin.serve.shadow import score
from twin.spec import PlantSpec
from twin.state import Store

from .plant import read_opcua, start_sim, stop, train_tiny, write_spec

SIM_SPEED = 20.0


class AbstainingTwin(TwinProposer):
    """The real active twin, which declines every decision as out of distribution."""

    def __call__(self, window, data_ts, now, operating):  # type: ignore[override]
        return NoProposal(
            self.spec.name, "ood", "the plant is out of the twin's distribution", data_ts
        )

    def ood_ratio(self, window):  # type: ignore[override]
        return float("inf")


class BusyAbstainingTwin(AbstainingTwin):
    """Abstains, on a machine so busy that one control step starts more than an interval late
    (its model check stalls): the step after it finds the same interval's data."""

    calls = 0
    stall_s = 0.0

    def refresh(self) -> None:
        super().refresh()
        self.calls += 1
        if self.calls == 3:
            time.sleep(self.stall_s)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    home = Home.at(tmp_path_factory.mktemp("tiny"))
    train_tiny(home)
    return home.models_dir("cstr")


def _serve(
    spec: PlantSpec, home: Home, steps: int, proposer: TwinProposer | None = None
) -> tuple[Store, Runtime]:
    store = Store(home.state_db)
    rt = Runtime(
        spec,
        home,
        RuntimeConfig(mode="auto", steps=steps),
        store=store,
        proposer=proposer or AbstainingTwin(home, spec, hard_operating=True),
        connections=open_connections(spec, home, "opcua"),
    )
    asyncio.run(asyncio.wait_for(rt.run(), timeout=240))
    return store, rt


@pytest.mark.timeout(300)
def test_linear_mpc_takes_over_when_the_twin_abstains(tmp_path, tiny_models) -> None:
    spec = write_spec(tmp_path / "spec", fallback="linear_mpc")
    home = Home.at(tmp_path / "home")
    shutil.copytree(tiny_models, home.models_dir("cstr"))
    sim = start_sim(spec, tmp_path / "sim.log")
    try:
        store, rt = _serve(spec, home, steps=6)
        props = store.list_proposals("cstr", limit=100)
        assert props, "the fallback made no proposal"
        assert all(p.payload["controller"] == "fallback:linear_mpc" for p in props)
        written = [p for p in props if p.status == "written"]
        assert written, [(p.status, p.status_reason) for p in props]
        newest = written[0]
        assert abs(read_opcua(spec, "Tc") - newest.mv_values["Tc"]) < 1e-3
        alarms = [e for e in audit.entries(store, kind="alarm") if e["kind"] == "alarm"]
        assert sum(e["what"]["kind"] == "twin_abstains" for e in alarms) == 1  # once per episode
        assert "fallback:linear_mpc" in alarms[0]["why"]
        assert audit.verify(store).ok
        store.close()
    finally:
        stop(sim)


@pytest.mark.timeout(300)
def test_hold_fallback_writes_nothing_and_alarms(tmp_path, tiny_models) -> None:
    spec = write_spec(tmp_path / "spec", fallback="hold")
    home = Home.at(tmp_path / "home")
    shutil.copytree(tiny_models, home.models_dir("cstr"))
    sim = start_sim(spec, tmp_path / "sim.log")
    try:
        nominal = read_opcua(spec, "Tc")
        store, rt = _serve(spec, home, steps=3)
        assert store.list_proposals("cstr", limit=100) == []
        assert store.writes_for(plant="cstr") == []
        assert read_opcua(spec, "Tc") == pytest.approx(nominal)
        kinds = [
            e["what"]["kind"] for e in audit.entries(store, kind="alarm") if e["kind"] == "alarm"
        ]
        assert kinds.count("twin_abstains") == 1
        shown = store.get_status("cstr").alarms  # what the control room shows
        assert any("fallback:hold acts" in a["message"] for a in shown)
        assert "ood" in rt.summary.reasons
        store.close()
    finally:
        stop(sim)


@pytest.mark.timeout(300)
def test_a_late_control_step_does_not_decide_one_interval_twice(tmp_path, tiny_models) -> None:
    spec = write_spec(tmp_path / "spec", fallback="linear_mpc")
    home = Home.at(tmp_path / "home")
    shutil.copytree(tiny_models, home.models_dir("cstr"))
    busy = BusyAbstainingTwin(home, spec, hard_operating=True)
    interval = spec.plant.control_interval_s
    busy.stall_s = 1.3 * interval / SIM_SPEED  # wakes early in the next interval, tick pending
    sim = start_sim(spec, tmp_path / "sim.log", speed=SIM_SPEED)
    try:
        store, rt = _serve(spec, home, steps=7, proposer=busy)
        props = store.list_proposals("cstr", limit=100)
        grid = [int(p.data_ts.timestamp() // interval) for p in props]
        assert busy.calls >= 3 and len(props) >= 3, (busy.calls, len(props))
        assert len(set(grid)) == len(grid), sorted(p.data_ts.isoformat() for p in props)
        store.close()
    finally:
        stop(sim)


@pytest.mark.timeout(300)
def test_shadow_scores_against_the_fallback_on_the_active_twins_scale(
    tmp_path, tiny_models, caplog
) -> None:
    """While the active twin abstains, its fallback's proposals stand for the active side of a
    shadow evaluation; their model (the twin's ARX) has no card of its own, so the errors are
    divided by the active twin's."""
    spec = write_spec(tmp_path / "spec", fallback="linear_mpc")
    home = Home.at(tmp_path / "home")
    shutil.copytree(tiny_models, home.models_dir("cstr"))
    active = registry.active_version(home, spec)
    assert active is not None
    candidate = train_tiny(home)
    registry.promote(home, "cstr", active)
    sim = start_sim(spec, tmp_path / "sim.log")
    try:
        store = Store(home.state_db)
        rt = Runtime(
            spec,
            home,
            RuntimeConfig(mode="supervised", steps=12, shadow=candidate),
            store=store,
            proposer=AbstainingTwin(home, spec, hard_operating=True),
            connections=open_connections(spec, home, "opcua"),
        )
        asyncio.run(asyncio.wait_for(rt.run(), timeout=240))
        props = store.list_proposals("cstr", limit=100)
        assert props and all(p.payload["controller"] == "fallback:linear_mpc" for p in props)
        assert store.writes_for(plant="cstr") == []  # supervised, nothing approved: the plant holds
        caplog.clear()
        result = score(home, spec, store, candidate)
        assert result.scored >= 3, result
        # The fallback's, but where a shadow step found no new active proposal to pair with:
        # there the active twin's own hold prediction stands.
        assert result.scored - 1 <= result.active_fallback <= result.scored
        assert result.active_multi_step is not None and math.isfinite(result.active_multi_step)
        assert "cannot read model" not in caplog.text
        store.close()
    finally:
        stop(sim)
