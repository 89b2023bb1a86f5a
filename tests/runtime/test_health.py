"""Controller health on a short real run (`twin sim` + `twin serve` with a tiny twin, the test as
the control room) matches a hand count from the audit log, and the CLI writes its reports."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twin import api, audit
from twin.cli import app
from twin.health.metrics import AT_LIMIT_FRACTION
from twin.health_report import report
from twin.paths import Home
from twin.users import create_user

from .plant import stop
from .test_serve_e2e import PASSWORD, Rig

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    from .plant import train_tiny

    home = Home.at(tmp_path_factory.mktemp("tiny"))
    train_tiny(home)
    return home.models_dir("cstr")


def _hand_count(entries: list[dict], limits: dict[str, tuple[float, float]]) -> dict:
    kinds = [e["kind"] for e in entries]
    starts = [datetime.fromisoformat(e["at"]) for e in entries if e["kind"] == "runtime_start"]
    stops = [e for e in entries if e["kind"] == "runtime_stop"]
    decided = [e for e in entries if e["kind"] in ("approve", "modify")]
    free = 0
    for e in decided:
        for tag, v in e["what"]["proposed"].items():
            lo, hi = limits[tag]
            tol = AT_LIMIT_FRACTION * (hi - lo)
            free += e["kind"] == "approve" and lo + tol < v < hi - tol
    return {
        "proposals": kinds.count("proposal"),
        "intervals": sum(e["what"]["steps"] for e in stops),
        "served_s": (datetime.fromisoformat(stops[-1]["at"]) - starts[0]).total_seconds(),
        "interventions": {k: kinds.count(k) for k in ("reject", "modify", "operator_limits")},
        "rejected": kinds.count("reject"),
        "moves_decided": len(decided),
        "moves_free": free,
    }


@pytest.mark.timeout(300)
def test_health_matches_audit_log(tmp_path: Path, tiny_models: Path) -> None:
    rig = Rig(tmp_path, tiny_models)
    try:
        since = datetime.now(UTC) - timedelta(seconds=1)
        rig.start("opcua")
        first = rig.decide_next("approve")
        assert rig.outcome(first.id) == "written"
        create_user(rig.store, "erin", "engineer", PASSWORD, actor="test")
        eng = api.log_in(rig.store, "erin", PASSWORD)
        api.set_operator_limits(rig.store, eng, rig.spec, "Tc", 285.0, 310.0, "health test")
        second = rig.decide_next("reject", min_id=first.id)
        third = rig.decide_next("modify", min_id=second.id)
        rig.outcome(third.id)
        assert stop(rig.serve, signal.SIGTERM, timeout=60) == 0
        rig.serve = None
        until = datetime.now(UTC) + timedelta(seconds=1)
        home = Home.at(rig.home)
        rep = report(rig.store, home, rig.spec, since, until, by="shift")
        limits = api.operator_limits(rig.store, rig.spec)
        hand = _hand_count(audit.entries(rig.store, start=since, plant="cstr"), limits)
    finally:
        rig.close()
    # The drift hook ran every interval beside the control step without an error.
    assert "control step failed" not in rig.serve_log.read_text()
    h = rep["total"]
    assert h["twin_proposals"] + h["fallback_proposals"] == hand["proposals"] >= 3
    assert h["intervals"] == hand["intervals"] > 0
    assert h["service_factor"] == pytest.approx(h["twin_proposals"] / hand["intervals"])
    assert h["served_h"] * 3600 == pytest.approx(hand["served_s"], abs=1e-3)
    assert (
        h["interventions"]
        == hand["interventions"]
        == {
            "reject": 1,
            "modify": 1,
            "operator_limits": 1,
        }
    )
    assert h["interventions_per_h"] == pytest.approx(3 / (hand["served_s"] / 3600))
    assert h["refused"].get("rejected") == hand["rejected"] == 1
    assert h["moves_decided"] == hand["moves_decided"] == 2
    assert h["moves_free"] == hand["moves_free"]
    assert h["mv_utilisation"] == pytest.approx(hand["moves_free"] / 2)
    assert set(h["at_limits"]) == {"Ca", "T", "Tc"}
    assert all(0.0 <= v <= 1.0 for v in h["at_limits"].values())
    assert (
        sum(p["twin_proposals"] + p["fallback_proposals"] for p in rep["periods"])
        == hand["proposals"]
    )

    # The CLI writes the same figures as JSON, CSV and a plotted page.
    outs = [tmp_path / f"health.{ext}" for ext in ("json", "csv", "html")]
    args = [
        "health-report",
        str(rig.spec.path),
        "--home",
        str(rig.home),
        "--by",
        "day",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
    ]
    for o in outs:
        args += ["--out", str(o)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = json.loads(outs[0].read_text())["total"]
    assert written["interventions"] == h["interventions"]
    assert written["intervals"] == h["intervals"]
    assert (
        outs[1].read_text().splitlines()[0].startswith("start")
        or "service_factor" in outs[1].read_text().splitlines()[0]
    )
    assert "Controller health: cstr" in outs[2].read_text()
