"""Shadow evaluation: `twin serve --shadow V` against `twin sim` with two tiny twins. The
candidate plans every interval on the active twin's window, its would-be proposals land in the
shadow table only (nothing is written to the plant), and `twin models shadow-report` scores
both twins on the matured intervals. A candidate that cannot load is an alarm, not a crash."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.state import backends
from tests.support.procs import start_logged, twin_cmd
from twin import audit, registry
from twin.cli import app
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.serve.live import LiveState
from twin.serve.shadow import Shadow, ShadowScore, gate, score
from twin.spec import load_spec
from twin.state import Store

from .plant import start_sim, stop, train_tiny, write_spec

pytestmark = [pytest.mark.slow]

STEPS = 14

# Both backends (SQLite, PostgreSQL): on PostgreSQL every store of the test, the runtime's
# included, is one fresh schema named by TWIN_STATE_URL.
backend = backends.backend
state_url = backends.state_url


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("state_url")
def test_shadow_plans_beside_the_active_twin_and_writes_nothing(
    tmp_path: Path, backend: str
) -> None:
    home = Home.at(tmp_path / "home")
    candidate = train_tiny(home)
    active = train_tiny(home)
    assert candidate != active
    registry.promote(home, "cstr", active)
    spec = write_spec(tmp_path / "spec")
    sim = start_sim(spec, tmp_path / "sim.log", speed=20.0)
    log = tmp_path / "serve.log"
    args = ["serve", str(spec.path), "--mode", "supervised", "--home", str(home.root)]
    args += ["--steps", str(STEPS), "--shadow", candidate]
    serve = start_logged(twin_cmd(*args), log)
    try:
        assert serve.wait(240) == 0, log.read_text()[-3000:]
    finally:
        stop(serve)
        stop(sim)

    with Store.open(home) as store:
        assert store.backend == backend  # the runtime's store too: the same TWIN_STATE_URL
        rows = store.list_shadow("cstr", candidate)
        proposals = {p.id: p for p in store.list_proposals("cstr", limit=1000)}
        assert store.writes_for(plant="cstr") == []  # no approval: nothing may reach the plant
        assert store.list_shadow("cstr", active) == []
        result = score(home, spec, store, candidate)
    assert rows and all(r.active_version == active for r in rows)
    proposed = [r for r in rows if r.mv_values is not None]
    assert proposed, [r.payload for r in rows]
    for r in proposed:
        assert set(r.mv_values or {}) == {t.name for t in spec.mvs}
        assert set(r.payload["predicted"]) == set(r.payload["hold"]) == {t.name for t in spec.cvs}
        assert r.payload["model_version"] == candidate
    paired = [r for r in rows if r.active_proposal_id is not None]
    assert paired
    for r in paired:  # the same window as the active twin's proposal of that interval
        p = proposals[r.active_proposal_id or 0]
        assert p.model_version == active and p.data_ts == r.data_ts
    assert result.shadow_rows == len(rows) and result.active_versions == [active]
    assert result.scored >= 1
    for v in (result.active_multi_step, result.candidate_multi_step, result.candidate_one_step):
        assert v is not None and math.isfinite(v) and v >= 0
    report = ["models", "shadow-report", str(spec.path), candidate, "--json"]
    out = CliRunner().invoke(app, [*report, "--home", str(home.root)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == result.to_dict()

    # Gated promotion: refused when the candidate cannot beat the active twin by the margin
    # (an improvement is at most 1), granted with a margin it meets; audited with the score.
    def promote(margin: str) -> str:
        args = ["models", "promote", str(spec.path), candidate, "--gated", "--margin", margin]
        out = CliRunner().invoke(app, [*args, "--min-intervals", "1", "--home", str(home.root)])
        return f"{out.exit_code} {out.output} {out.exception}"

    assert "not promoted" in promote("1.5")
    assert registry.active_version(home, "cstr") == active
    assert f"{candidate} is now the active version" in promote("-1000")
    assert registry.active_version(home, "cstr") == candidate
    with Store.open(home) as store:
        events = audit.entries(store, plant="cstr", kind="model_promote")
    refused, granted = events[-2:]
    assert refused["kind"] == "model_promote_refused" and granted["kind"] == "model_promote"
    assert granted["what"]["scored"] == result.scored and granted["what"]["active"] == active
    assert "margin 1.5" in refused["why"]


@pytest.mark.usefixtures("state_url")
def test_a_candidate_that_cannot_load_raises_an_alarm_and_does_not_propagate(
    tmp_path: Path,
) -> None:
    spec = load_spec("cstr")
    home = Home.at(tmp_path)
    with Store.open(home) as store:
        alarms = Alarms(store, spec.name)
        shadow = Shadow(home, spec, store, alarms, LiveState(spec, keep_s=60), "v-missing")
        asyncio.run(shadow.step("v-active", None))
        asyncio.run(shadow.step("v-active", None))  # a standing failure is one alarm
        raised = [a for a in store.alarm_history(spec.name) if a.kind == "runtime_error"]
        assert len(raised) == 1 and "shadow twin v-missing failed" in raised[0].message
        assert store.list_shadow(spec.name, "v-missing") == []


def _score(proposals: int, rows: int = 20, candidate: float = 0.5) -> ShadowScore:
    return ShadowScore(
        version="v002",
        active_versions=["v001"],
        shadow_rows=rows,
        candidate_proposals=proposals,
        scored=rows,
        active_one_step=1.0,
        active_multi_step=1.0,
        candidate_one_step=candidate,
        candidate_multi_step=candidate,
    )


def test_the_gate_refuses_a_candidate_that_predicts_well_but_abstains() -> None:
    assert gate(_score(proposals=12), "v001", margin=0.1) == []
    reasons = gate(_score(proposals=3), "v001", margin=0.1)  # half its error, 3 proposals of 20
    assert len(reasons) == 1 and "proposed on 3 of 20 shadow intervals (15%" in reasons[0]
    assert gate(_score(proposals=3), "v001", margin=0.1, min_acting=0.1) == []
    assert any("margin" in r for r in gate(_score(proposals=20, candidate=0.95), "v001", 0.1))
