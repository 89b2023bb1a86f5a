"""The tep setpoint oracle (benchmarks/tep_oracle.py): it moves setpoints only as the planner
may (max_move per control interval, toward targets inside the operating limits), and its
objective ranks any trip behind every run that keeps going, an early trip behind a late one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.bench import load
from twin.spec import load_spec

bench = load("tep_oracle")


@pytest.fixture(scope="module")
def oracle():  # type: ignore[no-untyped-def]
    return bench.Oracle(load_spec("tep"), "base", hours=0.5)


def test_targets_are_approached_at_max_move_inside_the_operating_limits(oracle) -> None:  # type: ignore[no-untyped-def]
    x = np.full(len(oracle.mvs), 1.0)  # every setpoint at its operating ceiling
    targets = oracle.targets(x)
    assert targets == {n: oracle.spec.tag(n).operating_limits[1] for n in oracle.mvs}
    run, trip_s = oracle.run(targets, seed=7, hours=0.5)
    assert not math.isfinite(trip_s)
    for n in oracle.mvs:
        u = np.array(run.u[n])
        steps = np.abs(np.diff(u))
        assert steps.max() <= oracle.max_move[n] + 1e-9, n
        assert u.max() <= targets[n] + 1e-9, n
    # 5 decisions in 0.5 h at max_move 10 kPa: the first recorded value is after the first
    # move, so the pressure setpoint ends 40 kPa above it.
    pressure = run.u["sp_reactor_pressure"]
    assert pressure[-1] == pytest.approx(pressure[0] + 40.0, abs=10.0 + 1e-6)
    assert oracle.fraction(targets) == pytest.approx(x)


def test_a_trip_ranks_behind_every_running_plant_and_an_early_one_behind_a_late_one(oracle) -> None:  # type: ignore[no-untyped-def]
    base = oracle.targets(oracle.fraction(bench.Simulation(oracle.spec, seed=7).mv))
    run, trip_s = oracle.run(base, seed=7, hours=0.5)
    running = oracle.objective(run, trip_s)
    assert math.isfinite(running) and running < bench.TRIP_PENALTY
    n = len(run.t_s)
    late = bench.Run(
        t_s=run.t_s[: n - 2],
        y={k: v[: n - 2] for k, v in run.y.items()},
        u={k: v[: n - 2] for k, v in run.u.items()},
    )
    early = bench.Run(
        t_s=run.t_s[: n // 2],
        y={k: v[: n // 2] for k, v in run.y.items()},
        u={k: v[: n // 2] for k, v in run.u.items()},
    )
    tripped_late = oracle.objective(late, 1000.0)
    tripped_early = oracle.objective(early, 500.0)
    assert running < tripped_late < tripped_early
    assert tripped_late > bench.TRIP_PENALTY  # however cheap the run was until the trip
