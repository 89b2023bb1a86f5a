"""Gating reasons, offset-free correction through the controller, Proposal JSON round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.plan.toy import ToyLinearModel, toy_spec
from twin.plan.controller import PlanningController
from twin.plan.gating import gate
from twin.plan.proposal import NoProposal, Proposal
from twin.plan.settings import PlannerConfig

TS = datetime(2026, 1, 1, 12, tzinfo=UTC)
CVS = [{"name": "y", "limits": [0.0, 20.0], "operating": [2.0, 18.0]}]
MVS = [{"name": "u", "limits": [0.0, 10.0], "max_move": 1.0}]


def _controller(**model_kw: object) -> PlanningController:
    spec = toy_spec(CVS, MVS, {"setpoints": {"y": 10.0}})
    model = ToyLinearModel(
        np.zeros((1, 1)), np.array([[2.0]]), np.zeros(1), ["y"], ["u"], **model_kw
    )
    return PlanningController(model, spec)


def _window(y: float, u: float) -> np.ndarray:
    return np.tile([y, u], (3, 1))


def test_stale_data_gives_no_proposal_with_the_age() -> None:
    out = _controller().decide(_window(8.0, 4.0), TS, now=TS + timedelta(seconds=31))
    assert isinstance(out, NoProposal) and out.code == "stale"
    assert "31 s old" in out.reason and "max_staleness_s=30" in out.reason


def test_out_of_distribution_state_gives_no_proposal() -> None:
    ctl = _controller(centre=np.array([8.0]), radius=5.0)
    assert isinstance(ctl.decide(_window(9.0, 4.0), TS), Proposal)
    out = ctl.decide(_window(17.0, 4.0), TS)
    assert isinstance(out, NoProposal) and out.code == "ood" and "OOD score" in out.reason


def test_no_model_and_no_data_reasons() -> None:
    no_model = gate("p", model_version=None, data_ts=TS, now=TS, max_staleness_s=30)
    assert (
        no_model is not None and no_model.code == "no_model" and "twin train p" in no_model.reason
    )
    no_data = gate("p", model_version="v1", data_ts=None, now=TS, max_staleness_s=30)
    assert no_data is not None and no_data.code == "no_data"
    assert gate("p", model_version="v1", data_ts=TS, now=TS, max_staleness_s=30) is None


def test_missing_mv_value_gives_no_proposal() -> None:
    window = _window(8.0, 4.0)
    window[:, 1] = np.nan
    out = _controller().decide(window, TS)
    assert isinstance(out, NoProposal) and out.code == "missing_data" and "'u'" in out.reason


def test_offset_free_correction_uses_the_measured_residual() -> None:
    # The toy encodes y itself, so readout(z0) = y_meas and the residual is zero; a model that
    # reads 1.0 low sees the residual and plans around it.
    class Biased(ToyLinearModel):
        def readout(self, z):  # type: ignore[no-untyped-def]
            y, q = super().readout(z)
            return y - 1.0, q - 1.0

    spec = toy_spec(CVS, [dict(MVS[0], max_move=10.0)], {"setpoints": {"y": 10.0}})
    model = Biased(np.zeros((1, 1)), np.array([[2.0]]), np.zeros(1), ["y"], ["u"])
    out = PlanningController(model, spec).decide(_window(9.0, 4.0), TS)
    assert isinstance(out, Proposal)
    # Plant: y = 2u (model) - 1 (readout bias) + 1 (measured residual) -> u = 5 reaches 10.
    assert out.proposed["u"] == pytest.approx(5.0, abs=0.01)
    assert out.predicted["y"].mean[-1] == pytest.approx(10.0, abs=0.02)


def test_proposal_json_round_trip() -> None:
    out = _controller(band=0.5).decide(_window(8.0, 4.0), TS)
    assert isinstance(out, Proposal)
    assert out.expires_at == TS + timedelta(seconds=20)  # default ttl: two control intervals
    back = Proposal.from_json(out.to_json())
    assert back == out
    horizon = PlannerConfig().for_interval(10.0).horizon
    assert back.hold["y"].mean == pytest.approx([8.0] * horizon)
    assert back.moves["u"] == pytest.approx(1.0)  # max_move toward the target
    assert set(back.margins) >= {"y.operating_hi", "u.lo", "u.hi"}


def test_evaluate_a_modified_move() -> None:
    # y = 2u: u = 5 brings y to 10 (fine); u = 9.5 predicts 19, above the operating limit 18.
    ctl = _controller(band=0.5)
    good = ctl.evaluate(_window(8.0, 4.0), {"u": 5.0})
    assert good["ok"] and good["reasons"] == []
    assert good["predicted"]["y"].mean[-1] == pytest.approx(10.0, abs=1e-4)
    bad = ctl.evaluate(_window(8.0, 9.0), {"u": 9.5})
    assert not bad["ok"] and any("operating limit" in r for r in bad["reasons"])
    too_far = ctl.evaluate(_window(8.0, 4.0), {"u": 6.0})  # max_move is 1.0
    assert not too_far["ok"] and any("max_move" in r for r in too_far["reasons"])
