"""`twin serve` and `twin propose` (and what-if) give the twin byte-identical inputs."""

from datetime import UTC, datetime

import numpy as np

from app.logic.whatif import window_at
from twin.generate import generate_into
from twin.historian import Historian
from twin.paths import Home
from twin.plan.propose import latest_window
from twin.sample import Quality, Sample
from twin.serve import LiveState
from twin.spec import load_spec


def test_serve_propose_and_whatif_build_the_same_window(tmp_path) -> None:
    spec = load_spec("cstr")
    home = Home.at(tmp_path)
    generate_into(home, spec, 0.25, seed=3, start=datetime(2026, 3, 1, tzinfo=UTC), progress=False)
    with Historian(home.historian_dir(spec.name)) as hist:
        start, end = hist.time_range()
        long = hist.read_long(start, end)
    samples = [
        Sample(ts.to_pydatetime(), tag, float(v), Quality(int(q)))
        for ts, tag, v, q in long[["ts", "tag", "value", "quality"]].itertuples(index=False)
    ]
    # Holes the three must treat alike: a tag silent for a while and a bad sample.
    cut = samples[len(samples) - 40 * len(spec.tags) :]
    drop = {id(s) for s in cut if s.tag == "Ca"}
    bad = next(s for s in reversed(samples) if s.tag == "T")
    served = [
        Sample(s.ts, s.tag, s.value, Quality.BAD) if s is bad else s
        for s in samples
        if id(s) not in drop
    ]
    home2 = Home.at(tmp_path / "h2")
    with Historian(home2.historian_dir(spec.name)) as h2:
        h2.append(served)
    live = LiveState(spec, keep_s=3600)
    by_ts: dict = {}
    for s in served:
        by_ts.setdefault(s.ts, []).append(s)
    for ts in sorted(by_ts):
        live.on_batch(by_ts[ts])
    w = 30
    tags = spec.tag_names
    newest = live.newest_ts()
    from_serve = live.window(tags, w, newest)
    found = latest_window(home2, spec, tags, w)
    assert found is not None
    from_propose, data_ts = found
    assert data_ts == newest
    with Historian(home2.historian_dir(spec.name)) as h2:
        from_whatif = window_at(h2, spec, tags, w, newest)
    assert from_serve.tobytes() == from_propose.tobytes() == from_whatif.tobytes()
    ca = tags.index("Ca")
    assert np.isnan(from_serve[-1, ca]) and np.isnan(from_serve[-1, tags.index("T")])
    assert np.isfinite(from_serve[-1, tags.index("Tc")])
