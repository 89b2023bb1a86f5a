"""Property: whatever mix of flushes, duplicates, out-of-order writes, sessions and compactions,
a read equals a plain dict model in which the last write of each (tag, ts) wins."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hist_helpers import at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.historian import Historian, HistorianConfig
from twin.sample import Sample

write = st.tuples(st.integers(0, 30), st.sampled_from(["a", "b", "c"]))  # (second, tag)
step = st.one_of(
    st.lists(write, min_size=1, max_size=12).map(lambda w: ("append", w)),
    st.just(("flush", None)),
    st.just(("compact", None)),
    st.just(("reopen", None)),
)


@pytest.mark.timeout(120)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=10))
def test_reads_match_a_last_write_wins_model(steps):
    folder = Path(tempfile.mkdtemp()) / "h"
    counter = itertools.count()
    model: dict[tuple[str, int], float] = {}
    config = HistorianConfig(flush_interval_s=60, merge_segments=2)
    h = Historian(folder, config=config)
    try:
        for kind, payload in steps:
            if kind == "append":
                batch = []
                for second, tag in payload:
                    v = float(next(counter))
                    batch.append(Sample(at(second), tag, v))
                    model[(tag, second)] = v
                h.append(batch)
            elif kind == "flush":
                h.flush()
            elif kind == "compact":
                h.compact()
            else:
                h.close()
                h = Historian(folder, config=config)
        h.close()
        frame = Historian(folder).read(at(0), at(31), tags=["a", "b", "c"])
        got = {
            (tag, round((ts - pd.Timestamp(at(0))).total_seconds())): v
            for tag in frame.columns
            for ts, v in frame[tag].items()
            if not np.isnan(v)
        }
        assert got == model
        assert frame.index.is_monotonic_increasing and frame.index.is_unique
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
