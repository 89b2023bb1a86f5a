"""Pieces of the serve loop that need no plant: the plant clock, live values, interval counting."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from twin.errors import BadInput
from twin.paths import Home
from twin.sample import Quality, Sample
from twin.serve import LiveState, PlantClock, Runtime, RuntimeConfig
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
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    ticks = [
        live.on_batch(_batch(spec, k)).tick for k in range(2 * spec.plant.samples_per_interval + 1)
    ]
    assert any(ticks) and not live.clock.measured


def test_plant_clock_never_runs_slower_than_real_time() -> None:
    clock = PlantClock()
    for i in range(10):  # timestamps advancing slower than the wall clock (a lagging server)
        clock.observe(T0 + timedelta(seconds=0.5 * i), mono=10.0 + i)
    assert clock.rate == 1.0
    clock.reset()
    assert clock.now() is None


def _batch(spec, k: int, values: dict[str, float] | None = None, quality=Quality.GOOD):
    ts = T0 + timedelta(seconds=spec.plant.sample_period_s * k)
    values = values if values is not None else {t.name: sum(t.limits) / 2 for t in spec.tags}
    return [Sample(ts, n, v, quality) for n, v in values.items()]


def test_intervals_are_counted_on_the_sample_clock() -> None:
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    spi = spec.plant.samples_per_interval
    ticks = sum(live.on_batch(_batch(spec, k)).tick for k in range(5 * spi + 1))
    assert ticks == 5  # one per control interval of plant time, however fast it arrived


def test_a_bad_newest_sample_is_not_replaced_by_an_older_good_one() -> None:
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    for k in range(3):
        live.on_batch(_batch(spec, k))
    live.on_batch(_batch(spec, 3, {"T": 450.0}, quality=Quality.OUT_OF_RANGE))
    now = T0 + timedelta(seconds=3 * spec.plant.sample_period_s)
    assert live.latest["T"].value == 450.0 and live.value("T") is None
    faults = {f.tag: f.kind for f in live.faults(now)}
    assert faults == {"T": "out_of_range"}
    window = live.window(spec.tag_names, 4, now)
    assert np.isnan(window[-1, spec.tag_names.index("T")])  # missing, never the older 330 K
    assert np.isfinite(window[-2, spec.tag_names.index("T")])


def test_staleness_is_each_tag_s_own() -> None:
    # Ca falls silent while the others report: its own last sample ages, nobody else's.
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    live.on_batch(_batch(spec, 0))
    others = {t.name: sum(t.limits) / 2 for t in spec.tags if t.name != "Ca"}
    n = int(2 * spec.safety.max_staleness_s / spec.plant.sample_period_s)
    for k in range(1, n):
        live.on_batch(_batch(spec, k, others))
    now = live.newest_ts()
    assert [(f.tag, f.kind) for f in live.faults(now)] == [("Ca", "stale")]


def test_a_gap_makes_the_tag_a_fault_at_once() -> None:
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    live.on_batch(_batch(spec, 0))
    gap_ts = T0 + timedelta(seconds=spec.plant.sample_period_s)
    live.on_batch([Sample(gap_ts, "Tc", float("nan"), Quality.GAP)])
    assert [(f.tag, f.kind) for f in live.faults(gap_ts)] == [("Tc", "bad")]


def test_one_tag_an_hour_behind_is_flagged_not_a_restart() -> None:
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    for k in range(10):
        live.on_batch(_batch(spec, 100 + k))
    before = live.clock.last_ts
    late = T0 + timedelta(seconds=spec.plant.sample_period_s * 109) - timedelta(hours=1)
    update = live.on_batch([Sample(late, "Caf", 1.0, Quality.GOOD)])
    assert update.clock_reset is None and "Caf" in update.behind
    assert live.clock.last_ts == before
    now = live.clock.last_ts
    assert [(f.tag, f.kind) for f in live.faults(now)] == [("Caf", "stale")]  # at once
    update = live.on_batch(_batch(spec, 110))
    assert update.clock_reset is None
    assert [f.tag for f in live.faults(live.newest_ts())] == []  # Caf reported again on time


def test_clock_going_back_resets_the_live_state() -> None:
    spec = load_spec("cstr")
    live = LiveState(spec, keep_s=600)
    for k in range(10):
        live.on_batch(_batch(spec, 100 + k))
    update = live.on_batch(_batch(spec, 0))  # a restarted simulator starts its clock over
    assert update.clock_reset is not None
    assert live.clock.last_ts == T0 and len(live.latest) == len(spec.tags)


def test_report_by_exception_holds_a_value_up_to_its_max_age(tmp_path) -> None:
    import tomllib

    spec = load_spec("cstr")
    raw = tomllib.loads(spec.path.read_text())
    raw["source"]["opcua"]["report_by_exception"] = True
    raw["source"]["opcua"]["max_age_s"] = 60
    from twin.spec import parse_spec

    rbe = parse_spec(raw, spec.path)
    live = LiveState(rbe, keep_s=600)
    live.on_batch(_batch(rbe, 0))
    others = {t.name: sum(t.limits) / 2 for t in rbe.tags if t.name != "Tc"}
    n = int(40 / rbe.plant.sample_period_s)
    for k in range(1, n + 1):
        live.on_batch(_batch(rbe, k, others))
    now = live.newest_ts()
    assert live.faults(now) == []  # Tc unchanged for 40 s: held, not a fault
    assert np.isfinite(live.window(rbe.tag_names, n, now)).all()
    assert [f.tag for f in live.faults(now + timedelta(seconds=30))] == ["Tc"]


def test_a_held_value_older_than_the_live_buffer_still_fills_the_window() -> None:
    """An MV that holds for minutes under report-by-exception stands for the present up to its
    max age, however short the runtime's buffer is (it once fell out of the buffer, and the
    twin abstained with "no good recent value" while the spec said the value was good)."""
    import tomllib

    from twin.spec import parse_spec
    from twin.window import lookback

    spec = load_spec("cstr")
    raw = tomllib.loads(spec.path.read_text())
    raw["source"]["opcua"]["report_by_exception"] = True
    raw["source"]["opcua"]["max_age_s"] = 600
    rbe = parse_spec(raw, spec.path)
    live = LiveState(rbe, keep_s=60)  # the buffer keeps a minute; Tc holds for five
    live.on_batch(_batch(rbe, 0))
    others = {t.name: sum(t.limits) / 2 for t in rbe.tags if t.name != "Tc"}
    n = int(300 / rbe.plant.sample_period_s)
    for k in range(1, n + 1):
        live.on_batch(_batch(rbe, k, others))
    now = live.newest_ts()
    assert live.faults(now) == []
    w = live.window(rbe.tag_names, 10, now)
    assert np.isfinite(w).all(), "Tc's held value went missing from the window"
    assert lookback(rbe, 10) >= timedelta(seconds=600)  # what propose and what-if read back


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
