"""Excitation schedules: inside the limits, within max_move, and rich enough to learn from."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import BadInput
from twin.excitation import (
    _LFSR_TAPS,
    KINDS,
    ExcitationConfig,
    design,
    hold_intervals,
    lfsr_sequence,
    mv_bands,
)
from twin.spec import load_spec, parse_spec

ODD = parse_spec(
    {
        "plant": {"name": "odd", "sample_period_s": 0.5, "control_interval_s": 1.5},
        "tags": [
            {"name": "y", "role": "cv", "limits": [0.0, 1.0]},
            {
                "name": "a",
                "role": "mv",
                "limits": [-3.0, 7.0],
                "operating": [-1.0, 2.5],
                "max_move": 0.37,
            },
            {"name": "b", "role": "mv", "limits": [100.0, 101.0], "max_move": 1.0},
        ],
    }
)
SPECS = {"cstr": load_spec("cstr"), "four_tank": load_spec("four_tank"), "odd": ODD}


@settings(max_examples=80, deadline=None)
@given(
    plant=st.sampled_from(sorted(SPECS)),
    kind=st.sampled_from(KINDS),
    band=st.sampled_from(["operating", "engineering"]),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    start_frac=st.lists(st.floats(-0.2, 1.2), min_size=2, max_size=2),
    hold_s=st.one_of(st.none(), st.floats(0.1, 500.0)),
    amplitude=st.floats(0.05, 1.0),
)
def test_schedules_respect_limits_and_max_move(
    plant, kind, band, n, seed, start_frac, hold_s, amplitude
) -> None:
    spec = SPECS[plant]
    eng = mv_bands(spec, "engineering")
    chosen = mv_bands(spec, band)
    # Starts anywhere around the engineering range, also outside the chosen band.
    start = eng[:, 0] + np.array(start_frac[: len(eng)]) * (eng[:, 1] - eng[:, 0])
    config = ExcitationConfig(band=band, hold_s=hold_s, amplitude=amplitude)
    u = design(spec, n, kind, np.random.default_rng(seed), start=start, config=config)
    assert u.shape == (n, len(spec.mvs))
    if n == 0:
        return
    max_move = np.array([t.max_move for t in spec.mvs])
    clipped_start = np.clip(start, eng[:, 0], eng[:, 1])
    moves = np.abs(np.diff(np.vstack([clipped_start, u]), axis=0))
    assert np.all(moves <= max_move)
    assert np.all((u >= eng[:, 0]) & (u <= eng[:, 1]))
    if kind == "none":
        assert np.all(u == clipped_start)
        return
    # Outside the band a path only heads into it; once inside, it stays inside.
    inside = (u >= chosen[:, 0] - 1e-9) & (u <= chosen[:, 1] + 1e-9)
    for j in range(u.shape[1]):
        first_in = np.argmax(inside[:, j]) if inside[:, j].any() else n
        assert inside[first_in:, j].all()
        distance = np.maximum(chosen[j, 0] - u[:first_in, j], u[:first_in, j] - chosen[j, 1])
        assert np.all(np.diff(np.concatenate([[np.inf], distance])) < 0)


@pytest.mark.parametrize("order", sorted(_LFSR_TAPS))
def test_prbs_registers_are_maximum_length(order: int) -> None:
    n = 2**order - 1
    bits = lfsr_sequence(order, 3 * n, np.random.default_rng(order))
    # Period exactly 2^order - 1: a shorter shift never reproduces the sequence.
    assert np.array_equal(bits[:n], bits[n : 2 * n])
    assert all(not np.array_equal(bits[:n], bits[p : p + n]) for p in range(1, n))
    assert bits[:n].sum() == 2 ** (order - 1)  # one more 1 than 0s


@pytest.mark.parametrize("kind", ["prbs", "gbn", "steps"])
def test_excitation_covers_the_band_up_to_its_edges(kind: str) -> None:
    spec = SPECS["cstr"]
    lo, hi = spec.tag("Tc").operating_limits
    u = design(spec, 2000, kind, np.random.default_rng(0), start=np.array([300.0]))[:, 0]
    assert u.min() <= lo + 0.05 * (hi - lo) and u.max() >= hi - 0.05 * (hi - lo)
    # Many distinct levels, not just two: the rate limit makes ramps through the middle.
    assert len(np.unique(np.round(u, 3))) >= 8


def test_hold_follows_the_time_constant_and_none_holds() -> None:
    spec = SPECS["four_tank"]
    assert hold_intervals(spec, ExcitationConfig(time_constant_s=60.0)) == 6
    assert hold_intervals(spec, ExcitationConfig()) == 3
    assert hold_intervals(spec, ExcitationConfig(hold_s=1.0)) == 1
    u = design(spec, 10, "none", start=np.array([3.0, 2.0]))
    assert np.all(u == [3.0, 2.0])


def test_bad_excitation_settings_are_bad_input() -> None:
    with pytest.raises(BadInput, match="'sine' is not one of prbs, gbn, steps, none"):
        design(SPECS["cstr"], 5, "sine")  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="amplitude"):
        ExcitationConfig(amplitude=0.0)
    with pytest.raises(BadInput, match="band"):
        ExcitationConfig(band="wide")  # type: ignore[arg-type]
