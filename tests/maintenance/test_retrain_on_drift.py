"""`twin serve --retrain-on-drift`: a drift recommendation is answered with a `twin retrain`
process on the live history since its onset, and the new version goes into shadow; the active
twin stays. A recommendation that cannot be answered (no history to train on) raises an alarm and changes
nothing. A window whose MVs barely moved brings a step-test request, and a retrain over it."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.tiny import TINY_MODEL, tiny_training
from twin import audit, registry
from twin.api import operator_limits
from twin.api.steptests import validate_design
from twin.data import DataConfig
from twin.generate import generate_into
from twin.historian import Historian
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.serve.config import ACTOR
from twin.serve.live import LiveState
from twin.serve.retrainer import AwaitedStepTest, Retrainer
from twin.serve.shadow import Shadow
from twin.spec import load_spec
from twin.state import Store
from twin.train import train_plant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


async def test_a_recommendation_is_retrained_once_and_shadowed(tmp_path: Path) -> None:
    home = Home.at(tmp_path / "home")
    spec = load_spec("cstr")
    generate_into(home, spec, hours=3.0, seed=0, progress=False)  # stands for the live history
    with Historian(home.historian_dir(spec.name)) as h:
        start, end = h.time_range()
        frame = h.read(start, end + (end - start) / 100)
    train = tiny_training(epochs=2, steps_per_epoch=5, batch_size=16, max_seconds=10)
    v1 = train_plant(home, spec, TINY_MODEL, DataConfig(horizon=5), train, frame=frame)

    with Store.open(home) as store:
        alarms = Alarms(store, spec.name)
        live = LiveState(spec, keep_s=3600.0)
        shadow = Shadow(home, spec, store, alarms, live, None)
        retrainer = Retrainer(home, spec, store, alarms, shadow, "quick")
        onset = start + timedelta(minutes=10)
        recommendation = {
            "model_version": v1,
            "data_ts": end.isoformat(),
            "onset_ts": onset.isoformat(),
        }
        retrainer.step(recommendation)
        assert retrainer.busy and retrainer.task is not None
        first = retrainer.task
        retrainer.step(recommendation)  # answered once, however often it is seen
        retrainer.step(dict(recommendation))
        assert retrainer.task is first
        version = await asyncio.wait_for(first, 300)

        assert version is not None and version != v1
        assert shadow.version == version
        assert registry.active_version(home, spec) == v1  # promotion stays gated, by hand
        (shadowed,) = audit.entries(store, plant=spec.name, kind="retrain_shadowed")
        assert shadowed["what"]["version"] == version
        assert shadowed["what"]["since"] == onset.isoformat()
        assert shadowed["what"]["answers"]["model_version"] == v1
        (retrained,) = audit.entries(store, plant=spec.name, kind="model_retrain")
        assert retrained["what"]["version"] == version
        assert retrained["what"]["asked_start"] == onset.isoformat()
        retrainer.step(recommendation)
        assert not retrainer.busy  # still answered: no second retrain

        # A later recommendation with no history left to train on (the historian moved away):
        # an alarm names the failure, the shadow keeps its version, no version is added.
        versions = registry.versions(home, spec)
        shutil.rmtree(home.historian_dir(spec.name))
        later = (end + timedelta(hours=1)).isoformat()
        retrainer.step({"model_version": v1, "data_ts": later, "onset_ts": later})
        assert retrainer.task is not None
        assert await asyncio.wait_for(retrainer.task, 120) is None
        assert shadow.version == version
        assert registry.versions(home, spec) == versions
        failed = [a for a in store.alarm_history(spec.name) if a.kind == "runtime_error"]
        assert failed and "no live history" in failed[0].message, [a.message for a in failed]
        await retrainer.close()


async def test_off_never_retrains(tmp_path: Path) -> None:
    home = Home.at(tmp_path / "home")
    spec = load_spec("cstr")
    with Store.open(home) as store:
        alarms = Alarms(store, spec.name)
        shadow = Shadow(home, spec, store, alarms, LiveState(spec, keep_s=60.0), None)
        retrainer = Retrainer(home, spec, store, alarms, shadow, "off")
        retrainer.step({"model_version": "v001", "data_ts": "t", "onset_ts": "t"})
        assert retrainer.task is None and shadow.version is None


async def test_a_window_that_barely_moved_an_mv_asks_for_a_step_test_and_retrains_over_it(
    tmp_path: Path,
) -> None:
    """Closed-loop history (the MVs held still) identifies poorly: the retrain still goes into
    shadow, and the runtime requests a small staircase on the MVs that did not move, inside
    their operator limits, with an alarm. It waits for that step test; once the test is done it
    retrains over the same window and shadows that version. No second request follows."""
    home = Home.at(tmp_path / "home")
    spec = load_spec("cstr")
    generate_into(home, spec, hours=2.0, seed=0, progress=False)
    with Historian(home.historian_dir(spec.name)) as h:
        start, end = h.time_range()
        frame = h.read(start, end + (end - start) / 100)
    held_from = end + timedelta(seconds=spec.plant.sample_period_s)
    # then three hours under control: every MV held where it was
    generate_into(home, spec, 3.0, "none", seed=1, start=held_from, progress=False)
    train = tiny_training(epochs=2, steps_per_epoch=5, batch_size=16, max_seconds=10)
    v1 = train_plant(home, spec, TINY_MODEL, DataConfig(horizon=5), train, frame=frame)

    with Store.open(home) as store:
        alarms = Alarms(store, spec.name)
        shadow = Shadow(home, spec, store, alarms, LiveState(spec, keep_s=3600.0), None)
        retrainer = Retrainer(home, spec, store, alarms, shadow, "quick")
        onset = held_from + timedelta(hours=1)
        recommendation = {"model_version": v1, "data_ts": "t1", "onset_ts": onset.isoformat()}
        retrainer.step(recommendation)
        assert retrainer.task is not None
        v2 = await asyncio.wait_for(retrainer.task, 300)
        assert v2 is not None and shadow.version == v2

        (camp,) = store.list_steptests(spec.name)
        assert camp.status == "requested" and camp.requested_by == ACTOR
        (retrained,) = audit.entries(store, plant=spec.name, kind="model_retrain")
        poor = retrained["what"]["excitation"]["poor"]
        assert poor and set(camp.design["mvs"]) == set(poor)
        validate_design(spec, camp.design)  # inside the limits, steps within max_move
        limits = operator_limits(store, spec)
        for name, amp in camp.design["mvs"].items():
            lo, hi = limits[name]
            values = [m["values"][name] for m in camp.design["moves"] if name in m["values"]]
            assert len(set(values)) == 3  # up, back, down around the held value
            assert 0 < amp <= spec.tag(name).max_move and lo <= min(values) <= max(values) <= hi
        raised = [a for a in store.alarm_history(spec.name) if a.kind == "step_test_requested"]
        assert len(raised) == 1 and f"step test {camp.id}" in raised[0].message

        # while it waits, a new recommendation is not answered with another retrain
        later = {"model_version": v1, "data_ts": "t2", "onset_ts": onset.isoformat()}
        retrainer.step(later)
        assert not retrainer.busy and retrainer.awaited is not None

        # an engineer approves it; the runtime runs it and ends it done
        store.move_steptest(
            camp.id,
            user="eng",
            from_=("requested",),
            to="approved",
            kind="steptest_approve",
            why="",
        )
        assert store.start_steptest(camp.id, end, actor=ACTOR)
        retrainer.step(None)
        assert not retrainer.busy  # still running: nothing to retrain over yet
        assert store.finish_steptest(camp.id, "done", end, actor=ACTOR, why="all moves written")
        retrainer.step(None)
        assert retrainer.busy and retrainer.task is not None
        v3 = await asyncio.wait_for(retrainer.task, 300)
        assert v3 not in (None, v2) and shadow.version == v3
        shadowed = audit.entries(store, plant=spec.name, kind="retrain_shadowed")
        assert [e["what"]["after_step_test"] for e in shadowed] == [None, camp.id]
        assert shadowed[-1]["what"]["since"] == onset.isoformat()
        assert len(store.list_steptests(spec.name)) == 1  # not requested again
        retrainer.step(later)  # answered by the retrain over the step test
        assert not retrainer.busy
        assert retrainer.awaited is None
        assert registry.active_version(home, spec) == v1

        # an aborted request ends the wait without a retrain
        cid = store.add_steptest(spec.name, camp.design, user=ACTOR, note="again", what={})
        retrainer.awaited = AwaitedStepTest(cid, recommendation)
        store.move_steptest(
            cid, user="eng", from_=("requested",), to="aborted", kind="steptest_abort", why="no"
        )
        before = retrainer.task
        retrainer.step(None)
        assert retrainer.awaited is None and retrainer.task is before
        await retrainer.close()
