"""The MV-level drift test on a real closed loop: the four_tank simulator under decentralised PI
control (twin.baselines.pid), with pump 1 wearing (`pump_wear_growth`: as new for 30 minutes,
then its gain falls 15 % over 2 h) and without. The loop holds h1 and h2 on target either way,
so only the pump voltages tell the two apart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from plants.base import Simulation
from tests.support.tiny import train_tiny_twin
from twin import audit
from twin.baselines.pid import PidController
from twin.health.drift_config import DriftConfig
from twin.health.monitor import DriftMonitor
from twin.health.mv_level import MVLevelCommissioning, MVLevelState
from twin.paths import Home
from twin.sample import Sample
from twin.serve.alarms import Alarms
from twin.serve.live import LiveState
from twin.spec import load_spec
from twin.state import Store

MINUTES = 150


def _closed_loop(scenario: str | None, seed: int) -> list[tuple[float, dict[str, float]]]:
    """(plant minute, MVs in force) at each control interval of a PI-controlled four_tank."""
    spec = load_spec("four_tank")
    sim = Simulation(spec, seed=seed, scenario=scenario)
    pid = PidController(spec, sim.model)
    setpoints = dict(spec.objective.setpoints)
    per = spec.plant.samples_per_interval
    y = sim.measure()
    out = []
    for k in range(int(MINUTES * 60 / spec.plant.control_interval_s)):
        sim.set_mvs(pid.decide(y, sim.mv, setpoints))
        for _ in range(per):
            y = sim.step()
        out.append(((k + 1) * spec.plant.control_interval_s / 60, dict(sim.mv)))
    return out


def _first_alarm(loop: list[tuple[float, dict[str, float]]]) -> tuple[float | None, float]:
    """Plant minute at which the test fires (commissioned on minutes 10-25 as the runtime
    does), and the largest CUSUM it reached."""
    cfg = DriftConfig()
    spec = load_spec("four_tank")
    spans = {t.name: t.operating_limits[1] - t.operating_limits[0] for t in spec.mvs}
    comm, state = MVLevelCommissioning(), None
    start, end = cfg.settle_s / 60, (cfg.settle_s + cfg.mv_commission_s) / 60
    peak = 0.0
    for minute, mvs in loop:
        if minute < start:
            continue
        if minute < end:
            comm.add(mvs)
            continue
        if state is None:
            state = MVLevelState(comm.reference(spans, cfg), cfg, spec.plant.control_interval_s)
        fired = state.update(mvs)
        peak = max(peak, state.level)
        if fired:
            return minute, peak
    return None, peak


@pytest.mark.parametrize("seed", [0, 1])
def test_pump_wear_moves_the_mvs_and_fires_a_quiet_loop_does_not(seed: int) -> None:
    drift, drift_peak = _first_alarm(_closed_loop("pump_wear_growth", seed))
    quiet, quiet_peak = _first_alarm(_closed_loop(None, seed))
    assert quiet is None, f"fired at minute {quiet} without drift"
    # The decision level (600 s / 10 s) was not approached without drift either.
    assert quiet_peak < 0.5 * 60.0, quiet_peak
    assert drift is not None, f"missed the wear (CUSUM peak {drift_peak:.1f})"
    # After the wear began (minute 30), and within its first hour (it reaches 15 % at 150).
    assert 30.0 < drift < 90.0, drift


def test_the_threshold_is_set_in_plant_time_and_a_spike_cannot_fire_it() -> None:
    cfg = DriftConfig()
    ref_fast = MVLevelCommissioning()
    for v in (1.0, 1.1, 0.9, 1.0):
        ref_fast.add({"u": v})
    ref = ref_fast.reference({"u": 1.0}, cfg)
    assert ref.spread["u"] == pytest.approx(max(ref.std["u"], 0.02))
    fast = MVLevelState(ref, cfg, interval_s=10.0)
    slow = MVLevelState(ref, cfg, interval_s=30.0)
    assert fast.threshold == 3 * slow.threshold == 60.0
    # A single excursion to 50 spreads adds at most cap - slack.
    assert not fast.update({"u": 1.0 + 50 * ref.spread["u"]})
    assert fast.level == pytest.approx(cfg.mv_cap - cfg.mv_slack)
    # A standing deviation of slack + 1 spreads fires after persist_s of plant time.
    state = MVLevelState(ref, cfg, interval_s=30.0)
    shifted = ref.level["u"] + 1.001 * (cfg.mv_slack + 1) * ref.spread["u"]
    fired_at = next(k for k in range(100) if state.update({"u": shifted}))
    assert (fired_at + 1) * 30.0 == pytest.approx(cfg.mv_persist_s)


def _tiny_four_tank(home: Home) -> str:
    """A deliberately small four_tank twin (seconds to train): the monitor needs its card."""
    return train_tiny_twin(home, "four_tank", 1.0, epochs=1, max_seconds=10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_runtime_monitor_raises_the_alarm_as_mv_level(tmp_path: Path) -> None:
    """The drift hook of `twin serve` fed the PI loop's samples: with nothing proposed (no
    prediction to score) only the MV-level test can fire, and its event says so."""
    home = Home.at(tmp_path / "home")
    version = _tiny_four_tank(home)
    spec = load_spec("four_tank")
    events = {}
    for scenario in ("pump_wear_growth", None):
        sim = Simulation(spec, seed=0, scenario=scenario, start=datetime(2026, 1, 1, tzinfo=UTC))
        pid = PidController(spec, sim.model)
        with Store.open(Home.at(tmp_path / str(scenario))) as store:
            live = LiveState(spec, keep_s=600.0)
            monitor = DriftMonitor(home, spec, store, Alarms(store, spec.name), live)
            y = sim.measure()
            for _ in range(int(MINUTES * 60 / spec.plant.control_interval_s)):
                sim.set_mvs(pid.decide(y, sim.mv, dict(spec.objective.setpoints)))
                for _ in range(spec.plant.samples_per_interval):
                    y = sim.step()
                    live.on_batch([Sample(sim.time, tag, float(v)) for tag, v in y.items()])
                monitor.check(version, None)
            events[scenario] = audit.entries(store, plant=spec.name, kind="retrain_recommended")
    assert events[None] == []
    (event,) = events["pump_wear_growth"]
    what = event["what"]
    assert what["fired_by"] == "mv_level" and what["model_version"] == version
    test = what["mv_level"]
    assert test["worst_mv"] in ("v1", "v2")
    assert max(*test["cusum_up"].values(), *test["cusum_down"].values()) >= test["threshold"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    alarm = (datetime.fromisoformat(what["data_ts"]) - start).total_seconds() / 60
    onset = (datetime.fromisoformat(what["onset_ts"]) - start).total_seconds() / 60
    assert 30.0 < onset < alarm < 90.0, (onset, alarm)
    assert what["retrain"].startswith("twin retrain four_tank --since ")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_new_operator_limits_start_the_mv_level_test_again(tmp_path: Path) -> None:
    """At minute 30 of a quiet PI loop the h1 target drops 2 cm, as an engineer would after
    tightening its operator limits: the pumps settle at a new level. With the limit change in
    the store the MV-level test commissions again on that level and stays quiet; the same move
    without one is what the test is for, and fires it."""
    home = Home.at(tmp_path / "home")
    version = _tiny_four_tank(home)
    spec = load_spec("four_tank")
    per_minute = 60 / spec.plant.control_interval_s
    fired, references = {}, {}
    for recorded in (True, False):
        sim = Simulation(spec, seed=0, start=datetime(2026, 1, 1, tzinfo=UTC))
        pid = PidController(spec, sim.model)
        targets = dict(spec.objective.setpoints)
        with Store.open(Home.at(tmp_path / str(recorded))) as store:
            live = LiveState(spec, keep_s=600.0)
            monitor = DriftMonitor(home, spec, store, Alarms(store, spec.name), live)
            y = sim.measure()
            for k in range(int(80 * per_minute)):
                if k == int(30 * per_minute):
                    assert monitor.mv_level is not None  # commissioned on the first level
                    references["first"] = monitor.mv_level.reference.level
                    targets["h1"] -= 2.0
                    if recorded:
                        h1 = spec.tag("h1").operating_limits
                        store.add_operator_limits(
                            spec.name,
                            "h1",
                            h1[0],
                            h1[1] - 4.0,
                            user="erin",
                            reason="tighter h1",
                            before=(h1[0], h1[1]),
                        )
                sim.set_mvs(pid.decide(y, sim.mv, targets))
                for _ in range(spec.plant.samples_per_interval):
                    y = sim.step()
                    live.on_batch([Sample(sim.time, tag, float(v)) for tag, v in y.items()])
                monitor.check(version, None)
            fired[recorded] = audit.entries(store, plant=spec.name, kind="retrain_recommended")
            if recorded:
                assert monitor.mv_level is not None  # commissioned again, on the new level
                references["second"] = monitor.mv_level.reference.level
    assert fired[True] == []
    assert [e["what"]["fired_by"] for e in fired[False]] == ["mv_level"]
    moved = {mv: references["second"][mv] - references["first"][mv] for mv in ("v1", "v2")}
    assert max(abs(d) for d in moved.values()) > 0.05, moved
