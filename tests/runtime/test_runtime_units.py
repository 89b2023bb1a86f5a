"""Pieces of the serve loop that need no plant: the plant clock, live values, interval counting."""

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from twin.errors import BadInput
from twin.historian import Historian
from twin.paths import Home
from twin.runtime import PlantClock, Runtime, RuntimeConfig
from twin.sample import Quality, Sample
from twin.spec import load_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_plant_clock_follows_an_accelerated_plant() -> None:
    clock = PlantClock()
    assert clock.now() is None
    for i in range(20):  # 5 s samples arriving every 0.25 s of wall time: 20x
        clock.observe(T0 + timedelta(seconds=5 * i), mono=100.0 + 0.25 * i)
    assert clock.rate == pytest.approx(20.0) and clock.measured
    # 1 wall second after the last sample the plant is 20 s further on.
    assert clock.now(mono=100.0 + 0.25 * 19 + 1.0) == T0 + timedelta(seconds=95 + 20)


def test_plant_clock_is_unmeasured_until_a_second_of_samples() -> None:
    clock = PlantClock()
    for i in range(4):  # 15 s of a 20x plant in 0.75 s of wall time: too little to time it by
        clock.observe(T0 + timedelta(seconds=5 * i), mono=100.0 + 0.25 * i)
    assert clock.rate == 1.0 and not clock.measured
    clock.observe(T0 + timedelta(seconds=20), mono=101.0)
    assert clock.measured and clock.rate == pytest.approx(20.0)
    clock.mark_gap()  # an outage keeps the measured rate: a silent plant ages on its own clock
    assert clock.measured and clock.now(mono=102.5) == T0 + timedelta(seconds=50)
    clock.reset()
    assert not clock.measured


def test_no_proposal_before_the_plant_clock_is_measured(tmp_path) -> None:
    # The first control interval can end within a wall second of the first data at 20x; a
    # proposal then, and a plant dying right after it, would age the data at wall speed.
    calls = []
    spec = load_spec("cstr")
    rt = Runtime(spec, Home.at(tmp_path), RuntimeConfig(), proposer=lambda *a: calls.append(a))
    rt._historian = Historian(tmp_path / "hist")
    for k in range(2 * spec.plant.samples_per_interval + 1):  # all at once: no wall time passes
        rt._on_batch(_batch(spec, k))
    assert rt._tick_due.is_set() and not rt.clock.measured
    asyncio.run(rt._control_step())
    assert calls == [] and "measuring" in rt.last_reason
    rt._historian.close()


def test_plant_clock_never_runs_slower_than_real_time() -> None:
    clock = PlantClock()
    for i in range(10):  # timestamps advancing slower than the wall clock (a lagging server)
        clock.observe(T0 + timedelta(seconds=0.5 * i), mono=10.0 + i)
    assert clock.rate == 1.0
    clock.reset()
    assert clock.now() is None


def _runtime(tmp_path, mode="supervised"):
    spec = load_spec("cstr")
    rt = Runtime(spec, Home.at(tmp_path), RuntimeConfig(mode=mode), proposer=lambda *a: None)
    rt._historian = Historian(tmp_path / "hist")
    return rt, spec


def _batch(spec, k: int, values: dict[str, float] | None = None, quality=Quality.GOOD):
    ts = T0 + timedelta(seconds=spec.plant.sample_period_s * k)
    values = values if values is not None else {t.name: sum(t.limits) / 2 for t in spec.tags}
    return [Sample(ts, n, v, quality) for n, v in values.items()]


def test_intervals_are_counted_on_the_sample_clock(tmp_path) -> None:
    rt, spec = _runtime(tmp_path)
    spi = spec.plant.samples_per_interval
    ticks = 0
    for k in range(5 * spi + 1):
        rt._on_batch(_batch(spec, k))
        ticks += rt._tick_due.is_set()
        rt._tick_due.clear()
    assert ticks == 5  # one per control interval of plant time, however fast it arrived
    rt._historian.close()


def test_unchanged_tags_hold_their_value_until_a_gap(tmp_path) -> None:
    # OPC-UA reports by exception: an MV that does not change is not re-sent every sample.
    rt, spec = _runtime(tmp_path)
    rt._on_batch(_batch(spec, 0))
    for k in range(1, 4):
        rt._on_batch(_batch(spec, k, {"Ca": 0.5, "T": 330.0}))
    assert rt.live["Tc"].ts == T0 + timedelta(seconds=3 * spec.plant.sample_period_s)
    window = rt._window(rt.live["Ca"].ts)
    assert np.isfinite(window[-4:]).all()
    rt._on_batch(
        [Sample(T0 + timedelta(seconds=20), t.name, float("nan"), Quality.GAP) for t in spec.tags]
    )
    held_until = rt.live["Tc"].ts
    rt._on_batch(_batch(spec, 5, {"Ca": 0.5}))
    assert rt.live["Tc"].ts == held_until  # after an outage a value is no longer carried forward
    rt._on_batch(_batch(spec, 6, {"Ca": float("nan")}, quality=Quality.BAD))
    assert rt.live["Ca"].ts == T0 + timedelta(seconds=5 * spec.plant.sample_period_s)
    rt._historian.close()


def test_clock_going_back_resets_live_state_and_expires_pending(tmp_path) -> None:
    rt, spec = _runtime(tmp_path)
    for k in range(10):
        rt._on_batch(_batch(spec, 100 + k))
    pid = rt.store.add_proposal(plant="cstr", mv_values={"Tc": 300.0}, payload={}, data_ts=T0,
                                expires_at=T0 + timedelta(days=1), model_version="v", mode="supervised")  # fmt: skip
    rt._on_batch(_batch(spec, 0))  # a restarted simulator starts its clock over
    assert rt.clock.last_ts == T0 and len(rt.live) == len(spec.tags)
    assert rt.store.get_proposal(pid).status == "expired"
    rt._historian.close()


def test_config_is_checked(tmp_path) -> None:
    with pytest.raises(BadInput, match="--mode"):
        RuntimeConfig(mode="manual")
    with pytest.raises(BadInput, match="--source"):
        RuntimeConfig(source="http")
    spec = load_spec("cstr").model_copy(deep=True)
    no_auto = spec.model_copy(
        update={"safety": spec.safety.model_copy(update={"allow_auto": False})}
    )
    with pytest.raises(BadInput, match="allow_auto"):
        Runtime(no_auto, Home.at(tmp_path), RuntimeConfig(mode="auto"), proposer=lambda *a: None)
