"""Hard CV limits (safety rule 4) on a toy linear model whose answers are known: the band of a
proposal never crosses an engineering limit (nor an operating limit in auto mode), a plan that
only moving can save is proposed, and when even holding crosses there is no proposal and the
reason names the CV, the limit and the predicted value."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.plan.toy import ToyLinearModel, toy_spec
from twin.plan.controller import PlanningController
from twin.plan.proposal import NoProposal, Proposal
from twin.plan.settings import PlannerConfig

TS = datetime(2026, 1, 1, tzinfo=UTC)
CFG = PlannerConfig(refine_iterations=12)
MV = {"name": "u", "limits": [0.0, 10.0], "max_move": 10.0}


def _decide(
    a: float, b: float, cv: dict, y0: float, u0: float, sp: float, hard_operating: bool = False
) -> Proposal | NoProposal:
    spec = toy_spec([{"name": "y", **cv}], [MV], {"setpoints": {"y": sp}})
    model = ToyLinearModel(np.array([[a]]), np.array([[b]]), np.zeros(1), ["y"], ["u"], band=0.5)
    ctl = PlanningController(model, spec, replace(CFG, hard_operating=hard_operating))
    return ctl.decide(np.tile([y0, u0], (3, 1)), TS)


def _top(out: Proposal | NoProposal) -> float:
    assert isinstance(out, Proposal), out
    return max(out.predicted["y"].hi)


def test_auto_mode_keeps_the_band_under_the_operating_limit() -> None:
    # Static plant y = 2u with a +-0.5 band; target 18 on the operating limit 18. Hard: the
    # band's top may touch 18, so y = 17.5 and u = 8.75 is the optimum.
    cv = {"limits": [0.0, 20.0], "operating": [2.0, 18.0]}
    hard = _decide(0.0, 2.0, cv, 10.0, 5.0, 18.0, hard_operating=True)
    assert _top(hard) <= 18.0 + 1e-5
    assert hard.proposed["u"] == pytest.approx(8.75, abs=0.02)
    # Advisory/supervised: the operating limit is a soft penalty the optimum leans into.
    soft = _decide(0.0, 2.0, cv, 10.0, 5.0, 18.0)
    assert _top(soft) > 18.0 + 1e-4


def test_engineering_limit_is_hard_in_every_mode() -> None:
    # Engineering limit 18.2 just above the target: the band's top may reach 18.2, no further
    # (a penalty alone would trade a little crossing for tracking).
    cv = {"limits": [0.0, 18.2], "operating": [2.0, 18.2]}
    out = _decide(0.0, 2.0, cv, 10.0, 5.0, 18.0)
    assert _top(out) <= 18.2 + 1e-5
    assert out.proposed["u"] == pytest.approx(8.85, abs=0.02)
    assert out.margins["y.limits_hi"] >= -1e-5


def test_a_move_that_saves_the_limit_is_proposed_where_holding_would_cross() -> None:
    # y+ = 0.5 y + 2u from y = 10, u = 9: holding heads for 36, far above 20; moving down to
    # u <= 4.75 keeps the band (+0.5) under 20 at every step.
    cv = {"limits": [0.0, 20.0], "operating": [2.0, 18.0]}
    out = _decide(0.5, 2.0, cv, 10.0, 9.0, 12.0)
    assert isinstance(out, Proposal)
    assert max(out.hold["y"].hi) > 20.0
    assert _top(out) <= 20.0 + 1e-5
    assert out.proposed["u"] <= 4.75 + 1e-6


def test_no_proposal_when_even_holding_crosses_and_the_reason_says_where() -> None:
    # y+ = y + 0.1u + ...: at 19.8 with a 0.5 band every plan's band is above 20 at once.
    cv = {"limits": [0.0, 20.0], "operating": [2.0, 18.0]}
    out = _decide(1.0, 0.1, cv, 19.8, 0.0, 12.0)
    assert isinstance(out, NoProposal) and out.code == "cv_limit"
    assert "y predicted 20.3 above its engineering limit 20 in 10 s" in out.reason
    assert "holding (within the MV limits), y predicted 20.3" in out.reason


def test_auto_mode_refuses_what_supervised_mode_proposes() -> None:
    # At 17.8 the band already reaches 18.3, over the operating limit, for every plan: in auto
    # mode nothing may be proposed; otherwise the operating limit is soft and a move is made.
    cv = {"limits": [0.0, 20.0], "operating": [2.0, 18.0]}
    auto = _decide(1.0, 0.1, cv, 17.8, 0.0, 12.0, hard_operating=True)
    assert isinstance(auto, NoProposal) and auto.code == "cv_limit"
    assert "above its operating limit 18" in auto.reason
    assert isinstance(_decide(1.0, 0.1, cv, 17.8, 0.0, 12.0), Proposal)


def test_evaluate_names_a_hard_crossing() -> None:
    spec = toy_spec(
        [{"name": "y", "limits": [0.0, 20.0], "operating": [2.0, 18.0]}],
        [MV],
        {"setpoints": {"y": 12.0}},
    )
    model = ToyLinearModel(np.zeros((1, 1)), np.array([[2.0]]), np.zeros(1), ["y"], ["u"], band=0.5)
    verdict = PlanningController(model, spec).evaluate(np.tile([10.0, 5.0], (3, 1)), {"u": 9.9})
    assert not verdict["ok"]
    assert any("y predicted 20.3 above its engineering limit 20" in r for r in verdict["reasons"])
