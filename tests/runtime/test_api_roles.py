"""Roles are enforced at the API (not only in the UI), decisions are recorded once, and audited."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.state import backends
from twin import api, audit
from twin.auth import AuthError, PermissionDenied, Role, User, authenticate
from twin.errors import BadInput
from twin.state import UserExists
from twin.users import create_user

from .conftest import PASSWORD, add_pending

# The store fixtures of both backends (SQLite, PostgreSQL): every test here runs on each.
backend = backends.backend
store = backends.store


def test_authenticate(store, users) -> None:
    assert authenticate(store, "operator", PASSWORD) == User("operator", Role.OPERATOR)
    with pytest.raises(AuthError):
        authenticate(store, "operator", "wrong password")
    with pytest.raises(AuthError):
        authenticate(store, "nobody", PASSWORD)
    row = store.get_user("operator")
    assert row.password_hash.startswith("$argon2") and PASSWORD not in row.password_hash


def test_a_viewer_cannot_approve_modify_or_reject(store, users) -> None:
    pid = add_pending(store)
    with pytest.raises(PermissionDenied, match="viewer"):
        api.approve(store, pid, users["viewer"])
    with pytest.raises(PermissionDenied):
        api.modify(store, pid, users["viewer"], {"Tc": 300.5})
    with pytest.raises(PermissionDenied):
        api.reject(store, pid, users["viewer"], "no")
    # A forged user object claiming a higher role is judged by the stored role.
    with pytest.raises(PermissionDenied):
        api.approve(store, pid, User("viewer", Role.ADMIN))
    with pytest.raises(PermissionDenied):
        api.approve(store, pid, User("ghost", Role.ADMIN))
    assert store.get_proposal(pid).status == "pending"
    assert store.get_decision(pid) is None


def test_role_ladder(store, users, cstr) -> None:
    with pytest.raises(PermissionDenied):
        api.set_operator_limits(store, users["operator"], cstr, "Tc", 290, 310)
    api.set_operator_limits(store, users["engineer"], cstr, "Tc", 290, 310, "narrow for start-up")
    assert store.operator_limits("cstr") == {"Tc": (290.0, 310.0)}
    assert api.operator_limits(store, cstr)["Tc"] == (290.0, 310.0)
    with pytest.raises(BadInput, match="outside engineering limits"):
        api.set_operator_limits(store, users["engineer"], cstr, "Tc", 270, 310)
    with pytest.raises(PermissionDenied):
        api.add_user(store, users["engineer"], "eve", "admin", "a long password")
    api.add_user(store, users["admin"], "eve", "operator", "a long password")
    eve = api.log_in(store, "eve", "a long password")
    with pytest.raises(UserExists):
        create_user(store, "eve", "viewer", "a long password", actor="test")
    with pytest.raises(BadInput, match="role 'boss'"):
        create_user(store, "bob", "boss", "a long password", actor="test")
    with pytest.raises(BadInput, match="at least 8"):
        create_user(store, "bob", "viewer", "short", actor="test")
    api.disable_user(store, users["admin"], "eve", "left")
    with pytest.raises(PermissionDenied, match="disabled"):
        api.approve(store, add_pending(store), eve)
    with pytest.raises(AuthError):
        authenticate(store, "eve", "a long password")


def test_approve_records_one_decision_and_audits(store, users) -> None:
    pid = add_pending(store)
    did = api.approve(store, pid, users["operator"], "looks right")
    assert store.get_proposal(pid).status == "approved"
    d = store.get_decision(pid)
    assert (
        d.id == did
        and d.kind == "approve"
        and d.user == "operator"
        and d.mv_values == {"Tc": 301.0}
    )
    with pytest.raises(api.ProposalClosed):
        api.approve(store, pid, users["engineer"])
    with pytest.raises(api.ProposalClosed):
        api.reject(store, pid, users["engineer"], "too late")
    kinds = [e["kind"] for e in audit.entries(store)]
    assert kinds[-2:] == ["proposal", "approve"]
    last = audit.entries(store)[-1]
    assert last["user"] == "operator" and last["why"] == "looks right"
    assert [d.id for d, _ in store.unapplied_approvals("cstr")] == [did]


def test_reject_needs_a_reason(store, users) -> None:
    pid = add_pending(store)
    with pytest.raises(BadInput, match="reason"):
        api.reject(store, pid, users["operator"], "  ")
    api.reject(store, pid, users["operator"], "Ca sensor under maintenance")
    assert store.get_proposal(pid).status == "rejected"
    assert store.unapplied_approvals("cstr") == []


def test_a_new_proposal_supersedes_the_pending_one(store, users) -> None:
    first = add_pending(store)
    second = add_pending(store)
    assert store.get_proposal(first).status == "superseded"
    with pytest.raises(api.ProposalClosed, match="superseded"):
        api.approve(store, first, users["operator"])
    assert store.pending_proposal("cstr").id == second


def test_expired_by_the_plant_clock_cannot_be_approved(store, users) -> None:
    pid = add_pending(store, ttl_s=10)
    store.put_status("cstr", last_sample_ts=datetime.now(UTC) + timedelta(seconds=11))
    with pytest.raises(api.ProposalClosed, match="expired"):
        api.approve(store, pid, users["operator"])


def test_modify_checks_limits_and_the_twins_evaluation(store, users, cstr) -> None:
    pid = add_pending(store)  # live Tc 300, max_move 2, operating [285, 315]
    with pytest.raises(api.ModificationRefused, match="max_move"):
        api.modify(
            store, pid, users["operator"], {"Tc": 300.0 + cstr.tag("Tc").max_move + 0.5}, spec=cstr
        )
    with pytest.raises(api.ModificationRefused, match="not a manipulated"):
        api.modify(store, pid, users["operator"], {"Tc": 300.5, "T": 1.0}, spec=cstr)
    calls = []

    def refuse(values):
        calls.append(values)
        return {"ok": False, "reasons": ["predicted T crosses 360 K"]}

    with pytest.raises(api.ModificationRefused, match="360 K"):
        api.modify(store, pid, users["operator"], {"Tc": 299.0}, evaluate=refuse, spec=cstr)
    assert calls == [{"Tc": 299.0}]
    assert store.get_proposal(pid).status == "pending"
    did = api.modify(
        store,
        pid,
        users["operator"],
        {"Tc": 299.0},
        "less aggressive",
        evaluate=lambda v: {"ok": True, "cost": 1.0},
        spec=cstr,
    )
    d = store.get_decision(pid)
    assert d.id == did and d.kind == "modify" and d.mv_values == {"Tc": 299.0}
    assert d.evaluation["cost"] == 1.0
    assert store.get_proposal(pid).status == "modified"


def test_steptest_lifecycle(store, users, cstr) -> None:
    mm = cstr.tag("Tc").max_move
    design = {
        "moves": [{"at_s": 0, "values": {"Tc": 301.0}}, {"at_s": 60, "values": {"Tc": 299.0}}]
    }
    with pytest.raises(PermissionDenied):
        api.request_steptest(store, users["operator"], cstr, design)
    with pytest.raises(BadInput, match="max_move"):
        api.request_steptest(
            store,
            users["engineer"],
            cstr,
            {
                "moves": [
                    {"at_s": 0, "values": {"Tc": 300.0}},
                    {"at_s": 5, "values": {"Tc": 300.0 + 1.5 * mm}},
                ]
            },
        )
    cid = api.request_steptest(store, users["engineer"], cstr, design, "identify Tc -> Ca")
    with pytest.raises(PermissionDenied):
        api.approve_steptest(store, users["operator"], cid)
    create_user(store, "erin", "engineer", PASSWORD, actor="test")
    api.approve_steptest(store, api.log_in(store, "erin", PASSWORD), cid)
    assert store.get_steptest(cid).status == "approved"
    with pytest.raises(PermissionDenied):
        api.abort_steptest(store, users["viewer"], cid)
    api.abort_steptest(store, users["operator"], cid, "operator stop")
    assert store.get_steptest(cid).status == "aborted"
    with pytest.raises(BadInput):
        api.approve_steptest(store, api.log_in(store, "erin", PASSWORD), cid)


def test_incident(store, users) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    iid = api.mark_incident(
        store, users["viewer"], "cstr", t0, t0 + timedelta(hours=1), "T excursion", "see trend"
    )
    (inc,) = store.list_incidents("cstr")
    assert inc.id == iid and inc.title == "T excursion" and inc.user == "viewer"
    with pytest.raises(BadInput):
        api.mark_incident(store, users["viewer"], "cstr", t0, t0 - timedelta(hours=1), "x")
    assert audit.verify(store).ok


def test_bootstrap_user_creates_or_resets(store) -> None:
    from twin.users import bootstrap_user

    bootstrap_user(store, "demo", "engineer", "first password")
    assert authenticate(store, "demo", "first password").role == Role.ENGINEER
    bootstrap_user(store, "demo", "operator", "second password")
    assert authenticate(store, "demo", "second password").role == Role.OPERATOR
    with pytest.raises(AuthError):
        authenticate(store, "demo", "first password")
    assert audit.verify(store).ok
