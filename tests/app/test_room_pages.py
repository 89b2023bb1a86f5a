"""Each page of the control room run by Streamlit's AppTest against a real twin home."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from room_homes import PASSWORD, BuiltHome, plan_at, store_proposal
from streamlit.testing.v1 import AppTest

from twin.state import Store

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
TIMEOUT = 60


def room(user=None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    if user is not None:
        at.session_state["user"] = user
        at.session_state["plant"] = "cstr"
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("error", "success", "info", "warning", "caption", "markdown")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def buttons(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


def test_login_page_checks_the_password(room_env: BuiltHome) -> None:
    at = room()
    at.text_input(key="login_name").input("operator")
    at.text_input(key="login_password").input("wrong password")
    at.button[0].click().run()
    assert "wrong user name or password" in texts(at)
    assert "user" not in at.session_state
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert at.session_state["user"].name == "operator"
    assert not at.exception
    assert any(m.label.startswith("Tc") for m in at.metric)  # landed on the Overview


def test_overview_shows_values_status_and_trends(room_env: BuiltHome) -> None:
    at = room(room_env.users["viewer"])
    labels = {m.label: m.value for m in at.metric}
    assert labels["Runtime"] == "not running"  # no `twin serve` in this test
    with Store.open(room_env.home) as s:
        status = s.get_status("cstr")
    assert status is None
    from twin.historian import Historian

    with Historian(room_env.home.historian_dir("cstr")) as h:
        latest = h.latest()
    assert float(labels["Tc [K] (mv)"]) == pytest.approx(latest["Tc"].value, rel=1e-3)
    assert float(labels["Ca [mol/L] (cv)"]) == pytest.approx(latest["Ca"].value, rel=1e-3)
    assert "No runtime has reported" in texts(at) or "no runtime" in texts(at)
    assert len(at.get("plotly_chart")) == len(room_env.spec.tags)


def test_proposals_viewer_sees_no_decision_buttons(room_env: BuiltHome) -> None:
    at = room(room_env.users["viewer"], "pages/proposals.py")
    with Store.open(room_env.home) as s:
        pending = s.pending_proposal("cstr")
    assert f"#{pending.id}" in {m.value for m in at.metric}
    assert "Approve" not in buttons(at) and "Reject" not in buttons(at)
    assert "may view proposals" in texts(at)


def test_proposals_modify_outside_limits_is_refused_then_reject(room_env: BuiltHome) -> None:
    with Store.open(room_env.home) as s:  # a fresh pending proposal from the real planner
        proposal = plan_at(room_env.home, room_env.spec, room_env.last - timedelta(minutes=5))
        pid = store_proposal(s, room_env.spec, proposal)
    at = room(room_env.users["operator"], "pages/proposals.py")
    assert {"Approve", "Evaluate with the twin", "Reject"} <= buttons(at)
    at.text_input(key=f"mod-{pid}-Tc").input("330")
    at.button(key=f"mod-eval-btn-{pid}").click().run()
    msg = texts(at)
    assert "outside the operator/engineering limits [288, 304]" in msg
    with Store.open(room_env.home) as s:
        assert s.get_proposal(pid).status == "pending"
    # A proper modification: evaluated by the twin first, then approvable.
    with Store.open(room_env.home) as s:
        live = s.get_proposal(pid).payload["mv_live"]["Tc"]
    target = live + 0.5 if live < 296.0 else live - 0.5  # a small move, inside the limits
    s_live = f"{target:.6g}"
    at.text_input(key=f"mod-{pid}-Tc").input(s_live)
    at.button(key=f"mod-eval-btn-{pid}").click().run()
    assert not at.exception
    assert f"mod-eval-{pid}" in at.session_state, texts(at)
    ev = at.session_state[f"mod-eval-{pid}"]
    assert ev.values == {"Tc": pytest.approx(target)}
    assert ev.rollout is not None and set(ev.rollout.cv) == {"Ca", "T"}
    approve_modified = at.button(key=f"mod-approve-{pid}")
    if not ev.ok:  # the tiny twin may judge the move harmful: then it cannot be approved
        assert approve_modified.disabled and "refuses the modified plan" in texts(at)
    else:
        assert not approve_modified.disabled
        approve_modified.click().run()
        with Store.open(room_env.home) as s:
            d = s.get_decision(pid)
            assert d.kind == "modify" and d.mv_values == {"Tc": pytest.approx(target)}
            assert d.evaluation["ok"] is True and "T" in d.evaluation["predicted"]
            proposal = plan_at(room_env.home, room_env.spec, room_env.last - timedelta(minutes=4))
            pid = store_proposal(s, room_env.spec, proposal)
        at.run()
    # Reject needs a reason; then the proposal is closed.
    at.button(key=f"reject-{pid}").click().run()
    assert "a reason is required" in texts(at)
    at.text_input(key=f"reject-reason-{pid}").input("testing the page")
    at.button(key=f"reject-{pid}").click().run()
    with Store.open(room_env.home) as s:
        assert s.get_proposal(pid).status == "rejected"
        assert s.get_decision(pid).user == "operator"


def test_twin_page_lists_versions_and_lets_engineers_promote(room_env: BuiltHome) -> None:
    at = room(room_env.users["engineer"], "pages/twin.py")
    assert "Promote" in buttons(at) and "Start training in the background" in buttons(at)
    assert len(at.dataframe) >= 2
    at.button(key="promote").click().run()
    assert f"{room_env.version} is now the active twin" in texts(at)
    viewer = room(room_env.users["viewer"], "pages/twin.py")
    assert "Promote" not in buttons(viewer)


def test_replay_page_shows_window_and_marks_an_incident(room_env: BuiltHome) -> None:
    at = room(room_env.users["viewer"], "pages/replay.py")
    assert "proposals with predictions" in texts(at)
    assert len(at.get("plotly_chart")) == len(room_env.spec.cvs) + len(room_env.spec.mvs)
    assert {b.label for b in at.get("download_button")} >= {"Export CSV", "Export HTML report"}
    # What if: the moves really made are the default; edit them and roll the twin out.
    actual = [float(x) for x in at.text_input(key="whatif-Tc").value.split(",")]
    assert len(actual) == 12 and all(288.0 <= v <= 304.0 for v in actual)
    edited = [min(304.0, actual[0] + 2.0)] * 12
    at.text_input(key="whatif-Tc").input(", ".join(f"{v:g}" for v in edited))
    at.button(key="whatif-run").click().run()
    assert not at.exception
    what = at.session_state["whatif"]
    assert what.mv_plan["Tc"] == pytest.approx(edited) and len(what.cv["T"].mean) == 12
    assert len(at.get("plotly_chart")) == len(room_env.spec.cvs) + len(room_env.spec.mvs)
    at.text_input(key="whatif-Tc").input("300, abc")
    at.button(key="whatif-run").click().run()
    assert "what-if:" in texts(at)
    at.text_input(key="incident-title").input("Tc oscillation")
    at.text_area(key="incident-notes").input("seen at shift change")
    submit = [b for b in at.button if b.label == "Mark this window as an incident"][0]
    submit.click().run()
    assert "Incident" in texts(at)
    with Store.open(room_env.home) as s:
        inc = s.list_incidents("cstr")[0]
    assert inc.title == "Tc oscillation" and inc.user == "viewer"


def test_audit_page_verifies_the_chain(room_env: BuiltHome) -> None:
    at = room(room_env.users["viewer"], "pages/audit.py")
    assert "audit chain OK" in texts(at)
    at.selectbox(key="audit-user").select("operator").run()
    assert not at.exception


def test_limits_page_editable_only_by_engineers(room_env: BuiltHome) -> None:
    at = room(room_env.users["operator"], "pages/limits.py")
    assert "Save operator limits" not in buttons(at)
    assert "engineers change them" in texts(at)
    eng = room(room_env.users["engineer"], "pages/limits.py")
    assert "Save operator limits" in buttons(eng)
    eng.button(key="limits-save").click().run()
    assert "No changes to save" in texts(eng)
