"""The model-maintenance chain, shortened, on the cstr: `twin serve --mode auto` against
`twin sim --speed 100` with jacket fouling (UA -15 % over 10 plant minutes from minute 5), the
drift tests' commissioning shortened to the first 3 scored predictions (TWIN_DRIFT_* settings:
the default 10 + 15 minutes would commission on the fouled plant) and made more sensitive than
the stated false-alarm rate allows, the drift alarm and its
retrain_recommended event, `twin retrain` on the live history the runtime recorded, the
candidate in `twin serve --shadow`, and `twin models promote --gated` deciding on the shadow
score. The same chain as benchmarks/maintenance.py (tiny twins, one plant, no quiet run, no
run after the promotion step). The tiny twin is a poor controller: the fouled reactor may ignite
under it, and the active twin then refuses to propose (T above its operating limit), so there may
be nothing to score in the shadow run; the test asserts that the gate decided on what there was.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support.bench import load
from twin import audit, registry
from twin.paths import Home
from twin.serve.shadow import gate
from twin.spec import load_spec
from twin.state import Store

maintenance = load("maintenance")

pytestmark = [pytest.mark.slow]

PLANT, SCENARIO, SPEED = "cstr", "fouling_15", 100.0


@pytest.mark.timeout(420)
def test_drift_alarm_retrain_shadow_and_gated_promotion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in {
        "TWIN_DRIFT_SETTLE_S": "0",
        "TWIN_DRIFT_COMMISSION_S": "0",
        "TWIN_DRIFT_MIN_COMMISSION": "3",
        # Three predictions leave the innovation means too imprecise for the trend test's
        # stated rate (1 % per day). This chain test trades false alarms for sensitivity: 50 %
        # per day at exactly known means, the threshold not raised for their error (8.1, the
        # old hand-set 10 was about as sensitive), the scale floored at a quarter of the tiny
        # twin's card RMSE (its card is 3-4x a trained twin's). Less sensitive, the test was
        # flaky: the tiny twin may drive the fouled reactor to ignition, and past the CV's
        # engineering limits the runtime makes no proposal and nothing is scored.
        "TWIN_DRIFT_FALSE_ALARM": "0.5",
        "TWIN_DRIFT_MAX_DELAY_FACTOR": "1",
        "TWIN_DRIFT_INNOVATION_FLOOR": "0.25",
    }.items():
        monkeypatch.setenv(var, value)  # read by the `twin serve` processes of the chain
    setup = maintenance.Setup(
        quick=True,
        hours=2.0,
        train_seconds=10,
        drift_run_min=90,
        scenario=SCENARIO,
        shadow_steps=16,
        min_intervals=3,
        margin=0.0,
        quiet=False,
        after=False,
        speed=SPEED,
        after_alarm_min=45,
    )
    row = maintenance.chain(PLANT, 0, setup, tmp_path)
    home = Home.at(tmp_path / f"{PLANT}-s0" / "home")
    spec = load_spec(PLANT)

    # The tests were commissioned on the first 3 scored predictions (the runtime proposes from
    # about minute 4, once it has measured the plant clock's rate), and the alarm fired after
    # the fouling began (minute 5), with its event and evidence.
    commissioned = row["commissioning"]
    assert commissioned is not None and commissioned["model_version"] == row["v1"], row
    assert commissioned["predictions"] >= 3
    assert row["drift_alarms"] == 1, row
    assert row["onset_min"] is not None and row["alarm_min"] > 5.0
    assert commissioned["last_prediction_minute"] < row["alarm_min"]
    with Store.open(home) as store:
        # the drift run's event first (the shadow run's runtime tests v1 afresh and may fire too)
        event = audit.entries(store, plant=PLANT, kind="retrain_recommended")[0]
        (trained,) = audit.entries(store, plant=PLANT, kind="model_retrain")
        shadow_rows = store.list_shadow(PLANT, row["v2"])
        promotions = audit.entries(store, plant=PLANT, kind="model_promote")
    evidence = event["what"]
    assert evidence["model_version"] == row["v1"] == "v001"
    if evidence["fired_by"] == "errors":
        assert max(evidence["multi_step_cusum"], evidence["one_step_cusum"]) >= 12
    elif evidence["fired_by"] == "disturbance":
        test = evidence["disturbance"]
        assert max(*test["cusum_up"].values(), *test["cusum_down"].values()) >= test["threshold"]
    elif evidence["fired_by"] == "mv_level":  # the loop moved Tc away to hold Ca
        test = evidence["mv_level"]
        assert max(*test["cusum_up"].values(), *test["cusum_down"].values()) >= test["threshold"]
    else:  # the tiny twin may drive the fouled reactor to ignition and abstain from then on
        assert evidence["fired_by"] == "ood", evidence
    assert evidence["retrain"].startswith(f"twin retrain {PLANT} --since ")

    # v2 was trained on the live window the event named, not on the generated history.
    assert row["v2"] != row["v1"] and row["v2"] in {
        m["version"] for m in registry.list_models(home, spec)
    }
    what = trained["what"]
    assert what["version"] == row["v2"] and what["active_version"] == row["v1"]
    assert what["asked_start"] == evidence["onset_ts"]  # the window the event named (widened
    assert what["start"] <= what["asked_start"] < what["end"]  # only when too short to train)
    assert datetime.fromisoformat(what["start"]) >= maintenance.START  # live, not generated
    assert what["samples"] > 100 and what["trigger"]["seq"] == event["seq"]

    # The shadow run planned beside v1 and was scored on the live window.
    assert shadow_rows and all(r.active_version == row["v1"] for r in shadow_rows)
    score = row["shadow"]
    assert score["shadow_rows"] == len(shadow_rows) and score["active_versions"] == [row["v1"]]

    # The gate decided on that score: promoted exactly when it passes, audited either way.
    from twin.serve.shadow import ShadowScore

    reasons = gate(
        ShadowScore(**{k: v for k, v in score.items() if k != "improvement"}),
        row["v1"],
        setup.margin,
        setup.min_intervals,
    )
    assert row["promoted"] == (not reasons), (reasons, row["promotion"])
    assert promotions[-1]["kind"] == (
        "model_promote" if row["promoted"] else "model_promote_refused"
    )
    active = registry.active_version(home, spec)
    assert active == (row["v2"] if row["promoted"] else row["v1"])


def test_an_empty_baseline_window_is_refused_with_the_runs_error() -> None:
    """A run that never reached the baseline window has no cost level to take ratios against:
    the benchmark says so, with the window and the run's own error, instead of dividing by 0."""
    import pandas as pd

    spec = load_spec(PLANT)
    setup = maintenance.Setup(quick=True)
    cv = spec.cvs[0].name
    early = pd.DataFrame(
        {cv: [1.0, 2.0]},
        index=pd.DatetimeIndex(
            [maintenance.START + timedelta(minutes=m) for m in (1, 2)], tz="UTC"
        ),
    )
    with pytest.raises(RuntimeError, match="baseline window .*twin serve exited"):
        maintenance.baseline_cost(early, spec, setup, "twin serve exited (1)")
    inside = early.copy()
    inside.index = inside.index + timedelta(minutes=setup.warmup_min + 1)
    assert maintenance.baseline_cost(inside, spec, setup) > 0
