"""The closed-loop benchmark's scoring (benchmarks/control.py): what it counts is what the
closing figures claim, so violations, crossings, MV breaches and ratios are checked on runs
whose answers are known, and a short oracle run on cstr/hard is scored end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.support.bench import load
from twin.spec import load_spec

bench = load("control")


def _run(ca: list[float], temp: list[float], tc: list[tuple[float, float]]) -> bench.Run:
    run = bench.Run(
        t_s=[5.0 * (k + 1) for k in range(len(ca))],
        y={"Ca": ca, "T": temp},
        sp={"Ca": [0.85] * len(ca), "T": [math.nan] * len(ca)},
        u={"Tc": [b for _, b in tc]},
    )
    run.moves = [{"prev.Tc": a, "Tc": b} for a, b in tc]
    run.plan_ms = [10.0, 30.0]
    run.plan_cpu_ms = [10.0, 30.0]
    return run


def test_score_counts_what_it_claims() -> None:
    spec = load_spec("cstr")  # T operating [300, 360], engineering [280, 400]; Tc op [288, 304]
    run = _run(
        ca=[0.85, 0.95, 0.75, 0.85],
        temp=[350.0, 365.0, 410.0, 355.0],
        tc=[(300.0, 302.0), (302.0, 305.0), (305.0, 300.0)],
    )
    s = bench.score(run, spec)
    # Squared Ca error times the 5 s sample period (T has no setpoint: not tracked).
    assert s["cost"] == pytest.approx(5.0 * (0.1**2 + 0.1**2))
    assert s["cv_violations"] == 2  # 365 and 410 K above the 360 K operating limit
    assert s["cv_worst"] == pytest.approx(50.0)
    assert s["cv_limit_crossings"] == 1  # 410 K above the 400 K engineering limit
    # 302 -> 305: above the 304 K operator limit and a 3 K move (max_move 2); 305 -> 300: 5 K.
    assert s["mv_violations"] == 2
    assert s["total_move"] == pytest.approx(10.0)
    assert s["max_T"] == 410.0


def test_ratios_are_against_the_oracle_hold_and_linear_mpc() -> None:
    table = {
        "jepa": {"cost": 3.0},
        "oracle": {"cost": 2.0},
        "linear_mpc": {"cost": 4.0},
        "hold": {"cost": 12.0},
    }
    bench.with_ratios(table)
    assert table["jepa"]["ratio_to_oracle"] == pytest.approx(1.5)
    assert table["jepa"]["ratio_to_hold"] == pytest.approx(0.25)
    assert table["jepa"]["ratio_to_linear_mpc"] == pytest.approx(0.75)
    assert table["oracle"]["ratio_to_oracle"] == 1.0


def test_figures_are_means_with_95_percent_intervals_and_keep_every_run() -> None:
    runs = [
        {
            "cost": c,
            "cv_violations": 1,
            "cv_limit_crossings": 0,
            "mv_violations": 0,
            "decisions": 10,
            "plan_ms_p50": 1.0,
            "plan_ms_p95": p,
            "plan_cpu_ms_p50": 1.0,
            "plan_cpu_ms_p95": p,
            "ss_error.Ca": e,
            "no_proposal": {"ood": 1},
        }
        for c, p, e in ((1.0, 10.0, 0.01), (2.0, 20.0, -0.01), (3.0, 30.0, 0.0))
    ]
    row = bench.aggregate(runs)
    assert row["cost"] == pytest.approx(2.0)
    # t(0.975, 2) = 4.303; sd 1; three runs.
    assert row["cost_ci95"] == pytest.approx(4.3027 / math.sqrt(3), rel=1e-3)
    assert row["ss_error.Ca"] == pytest.approx(0.0, abs=1e-12)
    assert row["cv_violations"] == 3 and row["decisions"] == 30
    assert row["plan_ms_p95"] == 20.0 and row["no_proposal"] == {"ood": 3}
    assert row["runs"] == runs and row["n_runs"] == 3


def test_a_partial_run_merges_into_the_saved_figures(tmp_path: Path) -> None:
    """A run of some scenarios keeps the others' figures; a config value that became a dict
    (history hours per plant, once one number) replaces the old value instead of failing."""
    from _control_report import save_results

    first = {
        "scenarios": {"four_tank/leak": {"jepa": {"cost": 1.0}}},
        "config": {"twin_seeds": [0, 1], "hours": 6.0, "twin_training": {"four_tank": [1]}},
    }
    save_results(first, {}, tmp_path)
    second = {
        "scenarios": {"cstr/stable": {"jepa": {"cost": 2.0}}},
        "config": {
            "twin_seeds": [0, 1, 2],
            "hours": {"cstr": 12.0, "four_tank": 6.0},
            "twin_training": {"cstr": [2]},
        },
    }
    save_results(second, {}, tmp_path)
    merged = bench._load(tmp_path)
    assert set(merged["scenarios"]) == {"four_tank/leak", "cstr/stable"}
    assert merged["config"]["hours"] == {"cstr": 12.0, "four_tank": 6.0}
    assert merged["config"]["twin_training"] == {"four_tank": [1], "cstr": [2]}
    assert merged["config"]["twin_seeds"] == [0, 1, 2]


def test_the_unmeasured_disturbance_scenarios_move_the_plant() -> None:
    keys = {c.key for c in bench.SCENARIOS}
    assert {"cstr/fouling", "cstr/fouling_15", "cstr/feed_conc", "four_tank/leak"} <= keys
    spec = load_spec("cstr")
    case = bench.BenchScenario("cstr", "feed_conc", 6.0, hidden=("Caf",))
    run = bench.run_scenario(case, spec, "hold", None)
    assert run.y["Ca"][-1] < 0.84  # the feed got weaker at 5 min


@pytest.mark.timeout(300)
def test_oracle_on_the_hard_scenario_keeps_every_limit() -> None:
    """The first minutes of cstr/hard: the setpoint jumps toward the unstable middle branch at
    5 min; the oracle moves the coolant up within max_move and keeps T under 360 K."""
    spec = load_spec("cstr")
    case = bench.BenchScenario("cstr", "hard", 9.0)
    run = bench.run_scenario(case, spec, "oracle", None)
    s = bench.score(run, spec)
    assert s["mv_violations"] == 0
    assert s["cv_violations"] == 0 and s["cv_limit_crossings"] == 0
    assert s["decisions"] == 18
    ca = np.array(run.y["Ca"])
    assert ca[-1] < ca[len(ca) // 2] - 0.02  # it does move toward the 0.6 mol/L target


def test_the_trace_lines_each_prediction_up_with_the_plants_value_that_many_intervals_later() -> (
    None
):
    from datetime import UTC, datetime

    from twin.plan.proposal import Band, NoProposal, Proposal

    trace_mod = load("control_trace")
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    plan = Band(mean=[1.0, 2.0, 3.0, 4.0, 5.0], lo=[0.0] * 5, hi=[9.0] * 5)
    hold = Band(mean=[-1.0, -2.0, -3.0, -4.0, -5.0], lo=[0.0] * 5, hi=[0.0] * 5)
    kwargs = {"plant": "p", "model_version": "v", "created_at": ts, "data_ts": ts}
    proposal = Proposal(
        **kwargs,
        expires_at=ts,
        current={"u": 0.0},
        proposed={"u": 1.0},
        mv_plan={"u": [1.0] * 5},
        interval_s=30.0,
        setpoints={},
        predicted={"y": plan},
        hold={"y": hold},
        quantile_levels=(0.1, 0.9),
        cost={},
        hold_cost={},
        margins={},
        ood_score=0.4,
    )
    # Two samples per interval; the plant's true y is its sample index.
    y = {"y": [float(k) for k in range(20)]}
    rows = trace_mod.trace_rows([proposal, NoProposal("p", "ood", "unseen"), proposal], y, 2, 0.5)
    assert [r["minute"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[1]["abstained"] == "ood"
    # Decision 2 is made at sample 4: one interval later is sample 5, four later 11, five 13.
    assert rows[2]["y.h1"] == {"plan": 1.0, "plan_hi": 9.0, "hold": -1.0, "true": 5.0}
    assert rows[2]["y.h4"]["true"] == 11.0 and rows[2]["y.h5"]["plan"] == 5.0
    assert rows[2]["y.h5"]["true"] == 13.0 and rows[0]["ood"] == 0.4
