"""`twin serve --retrain-on-drift`: a drift recommendation is answered with a `twin retrain`
process on the live history since its onset, and the new version goes into shadow; the active
twin stays. A recommendation that cannot be answered (no history to train on) raises an alarm and changes
nothing."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.tiny import TINY_MODEL, tiny_training
from twin import audit, registry
from twin.data import DataConfig
from twin.generate import generate_into
from twin.historian import Historian
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.serve.live import LiveState
from twin.serve.retrainer import Retrainer
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
