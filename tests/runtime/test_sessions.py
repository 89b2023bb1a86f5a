"""Sessions at the API: bare names refused, expiry, revocation, throttling, re-authentication,
the two-person rule, and the runtime refusing a decision whose audit entry was tampered with."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime

import pytest

from tests.state import backends
from twin import api, audit
from twin.auth import (
    RUNTIME,
    AuthError,
    LoginThrottled,
    NotAuthenticated,
    PermissionDenied,
    ReauthRequired,
    Role,
    Session,
    User,
)
from twin.errors import BadInput
from twin.users import create_user

from .conftest import PASSWORD, add_pending
from .plant import read_opcua, start_serve, stop
from .test_serve_e2e import Rig, tiny_models  # noqa: F401  (the fixture is used by name)

# The store fixtures of both backends (SQLite, PostgreSQL): every test here runs on each.
backend = backends.backend
store = backends.store


def settings(store, **values) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (store.path.parent / "security.toml").write_text("\n".join(lines) + "\n")


def kinds(store) -> list[str]:
    return [e["kind"] for e in audit.entries(store)]


def test_every_state_change_refuses_a_bare_name(store, users, cstr) -> None:
    pid = add_pending(store)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    calls = {
        "approve": lambda who: api.approve(store, pid, who),
        "modify": lambda who: api.modify(store, pid, who, {"Tc": 300.5}, spec=cstr),
        "reject": lambda who: api.reject(store, pid, who, "no"),
        "limits": lambda who: api.set_operator_limits(store, who, cstr, "Tc", 290, 310),
        "promote": lambda who: api.promote_model(store, who, store.path.parent, "cstr", "v1"),
        "request": lambda who: api.request_steptest(store, who, cstr, {"moves": []}),
        "approve_steptest": lambda who: api.approve_steptest(store, who, 1),
        "abort": lambda who: api.abort_steptest(store, who, 1),
        "add_user": lambda who: api.add_user(store, who, "eve", "admin", "a long password"),
        "role": lambda who: api.change_role(store, who, "viewer", "admin"),
        "disable": lambda who: api.disable_user(store, who, "operator"),
        "end_sessions": lambda who: api.end_sessions(store, who, "operator"),
        "incident": lambda who: api.mark_incident(store, who, "cstr", t0, t0, "x"),
    }
    before = len(kinds(store))
    for call in calls.values():
        with pytest.raises(NotAuthenticated, match="bare user name"):
            call("admin")
        with pytest.raises(NotAuthenticated, match="User object"):
            call(User("admin", Role.ADMIN))
        # A session object with a made-up token is not a session either.
        with pytest.raises(NotAuthenticated, match="unknown session"):
            call(Session("made-up-token", "admin", Role.ADMIN, time.time()))
    assert len(kinds(store)) == before, "a refused call changed nothing"
    assert store.get_proposal(pid).status == "pending"
    # The runtime's identity is for auto mode only, never a person's stand-in.
    with pytest.raises(PermissionDenied):
        api.approve(store, pid, RUNTIME)
    with pytest.raises(PermissionDenied, match="supervised mode"):
        api.auto_approve(store, pid, RUNTIME)
    with pytest.raises(PermissionDenied, match="only the runtime"):
        api.auto_approve(store, pid, users["admin"])  # type: ignore[arg-type]


def test_a_viewers_session_cannot_approve(store, users) -> None:
    pid = add_pending(store)
    viewer = api.log_in(store, "viewer", PASSWORD)
    with pytest.raises(PermissionDenied, match="is a viewer"):
        api.approve(store, pid, viewer)
    # Promoted in the store, the same session may: the role is read at every call.
    api.change_role(store, users["admin"], "viewer", "operator", "covering a shift")
    api.approve(store, pid, viewer)
    assert store.get_decision(pid).user == "viewer"


def test_the_store_keeps_no_token(store, users) -> None:
    s = api.log_in(store, "operator", PASSWORD, source="10.0.0.7")
    if store.backend == "sqlite":
        raw = store.path.read_bytes() + store.path.with_name("state.db-wal").read_bytes()
    else:  # every row of every table that could hold it
        tables = ("sessions", "login_attempts", "audit", "users")
        raw = repr([store.query(f"SELECT * FROM {t}") for t in tables]).encode()
    assert s.token.encode() not in raw and s.token not in repr(s)
    assert api.resume(store, s.token).name == "operator"
    assert kinds(store).count("login") == len(Role) + 1


def test_idle_timeout(store, users) -> None:
    settings(store, idle_timeout_s=1.5)
    s = api.log_in(store, "operator", PASSWORD)
    time.sleep(0.9)
    api.mark_incident(store, s, "cstr", datetime.now(UTC), datetime.now(UTC), "in use")
    time.sleep(0.9)
    api.resume(store, s.token)  # used 0.9 s ago: still alive 1.8 s after log-in
    time.sleep(2.0)
    with pytest.raises(NotAuthenticated, match="idle"):
        api.resume(store, s.token)


def test_absolute_lifetime(store, users) -> None:
    settings(store, session_lifetime_s=1.0)
    s = api.log_in(store, "operator", PASSWORD)
    api.resume(store, s.token)
    time.sleep(1.2)
    with pytest.raises(NotAuthenticated, match="lifetime"):
        api.resume(store, s.token)


def test_log_out_and_log_out_everywhere(store, users) -> None:
    a, b = api.log_in(store, "operator", PASSWORD), api.log_in(store, "operator", PASSWORD)
    assert api.log_out(store, a) == 1
    with pytest.raises(NotAuthenticated, match="logged out"):
        api.resume(store, a.token)
    api.resume(store, b.token)
    c = api.log_in(store, "operator", PASSWORD)
    assert api.log_out(store, c, everywhere=True) == 3  # b, c and the fixture's
    for s in (b, c, users["operator"]):
        with pytest.raises(NotAuthenticated, match="log out everywhere"):
            api.resume(store, s.token)
    api.resume(store, users["engineer"].token)  # another user's session is untouched
    # An admin ends another user's sessions; disabling a user ends them too.
    d = api.log_in(store, "operator", PASSWORD)
    with pytest.raises(PermissionDenied):
        api.end_sessions(store, users["engineer"], "operator")
    assert api.end_sessions(store, users["admin"], "operator", "lost badge") == 1
    with pytest.raises(NotAuthenticated, match="lost badge"):
        api.resume(store, d.token)
    assert {"logout", "logout_everywhere"} <= set(kinds(store))


def test_throttling_by_name_and_by_source(store, users) -> None:
    settings(store, max_failures=3, max_source_failures=5, failure_window_s=60, backoff_s=3.0)
    for _ in range(3):
        with pytest.raises(AuthError, match="wrong user name or password"):
            api.log_in(store, "operator", "guess", source="10.0.0.9")
    # Locked: even the right password is refused, and the refusal is audited.
    with pytest.raises(LoginThrottled, match="user name 'operator'.*try again in [1-3] s"):
        api.log_in(store, "operator", PASSWORD, source="10.0.0.1")
    assert kinds(store).count("login_locked") == 1 and "login_refused" in kinds(store)
    api.log_in(store, "engineer", PASSWORD, source="10.0.0.9")  # another name is not locked
    # One source guessing many names is locked as a source, other sources are not.
    for name in ("viewer", "admin"):
        with pytest.raises(AuthError):
            api.log_in(store, name, "guess", source="10.0.0.9")
    with pytest.raises(LoginThrottled, match="source 10.0.0.9"):
        api.log_in(store, "viewer", PASSWORD, source="10.0.0.9")
    api.log_in(store, "viewer", PASSWORD, source="10.0.0.2")
    time.sleep(3.1)
    api.log_in(store, "operator", PASSWORD)  # the back-off is over
    # A good log-in starts the name's count again.
    with pytest.raises(AuthError):
        api.log_in(store, "operator", "guess")
    api.log_in(store, "operator", PASSWORD)


def test_settings_name_the_bad_field(store) -> None:
    settings(store, max_failures=0)
    with pytest.raises(BadInput, match="max_failures = 0 must be a positive number"):
        api.log_in(store, "operator", PASSWORD)
    settings(store, single_operator="yes")
    with pytest.raises(BadInput, match="single_operator"):
        api.log_in(store, "operator", PASSWORD)
    settings(store, idle_timeout=5)
    with pytest.raises(BadInput, match="unknown setting.*idle_timeout"):
        api.log_in(store, "operator", PASSWORD)


def test_an_approval_that_writes_needs_a_fresh_password(store, users) -> None:
    settings(store, reauth_s=1.0)
    pid = add_pending(store)
    s = api.log_in(store, "operator", PASSWORD)
    time.sleep(1.2)
    with pytest.raises(ReauthRequired, match="enter your password again"):
        api.approve(store, pid, s)
    with pytest.raises(AuthError):
        api.reauthenticate(store, s, "not it")
    s = api.reauthenticate(store, s, PASSWORD)
    api.approve(store, pid, s)
    assert "reauth" in kinds(store)
    # Rejecting writes nothing: it needs no fresh password.
    time.sleep(1.2)
    api.reject(store, add_pending(store), s, "not now")


def test_two_person_rule_for_step_tests(store, users, cstr) -> None:
    design = {"moves": [{"at_s": 0, "values": {"Tc": 301.0}}]}
    cid = api.request_steptest(store, users["engineer"], cstr, design)
    with pytest.raises(PermissionDenied, match="two-person rule"):
        api.approve_steptest(store, users["engineer"], cid)
    assert store.get_steptest(cid).status == "requested"
    create_user(store, "erin", "engineer", PASSWORD, actor="test")
    api.approve_steptest(store, api.log_in(store, "erin", PASSWORD), cid)
    assert store.get_steptest(cid).approved_by == "erin"
    assert "two_person_waived" not in kinds(store)
    # A one-person site says so; each use is audited.
    settings(store, single_operator=True)
    cid2 = api.request_steptest(store, users["engineer"], cstr, design)
    api.approve_steptest(store, users["engineer"], cid2)
    (waiver,) = audit.entries(store, kind="two_person_waived")
    assert waiver["subject"] == f"steptest:{cid2}" and waiver["user"] == "engineer"
    assert audit.verify(store).ok


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_runtime_refuses_a_decision_whose_audit_entry_was_tampered(
    tmp_path,
    tiny_models,  # noqa: F811  (the fixture imported above)
) -> None:
    rig = Rig(tmp_path, tiny_models, ttl_s=600.0)
    try:
        rig.start("opcua")
        nominal = read_opcua(rig.spec, "Tc")
        p = rig.wait(lambda: rig.store.pending_proposal("cstr"), 120, "a proposal")
        stop(rig.serve)  # however it ends, it is down while the attacker works
        api.approve(rig.store, p.id, rig.op, "approved while the runtime was down")
        # An attacker with the database but not the audit key changes the approved value in
        # the decision row and in its audit entry, and recomputes the entry's hash.
        forged = {"Tc": nominal - 5.0}
        seq = rig.store.decision_audit_seq(rig.store.get_decision(p.id).id)
        db = sqlite3.connect(rig.store.path)
        db.execute("DROP TRIGGER audit_no_update")
        db.execute(
            "UPDATE decisions SET mv_values = ? WHERE proposal_id = ?", (json.dumps(forged), p.id)
        )
        entry = next(e for e in audit.entries(rig.store) if e["seq"] == seq)
        entry["what"]["values"] = forged
        rehashed = audit.entry_hash(entry, entry["prev_hash"])
        db.execute(
            "UPDATE audit SET what = ?, hash = ? WHERE seq = ?",
            (audit.canonical(entry["what"]), rehashed, seq),
        )
        db.commit()
        db.close()
        rig.serve = start_serve(rig.spec, rig.home, rig.serve_log)
        assert rig.outcome(p.id, timeout=90) == "refused"
        (w,) = rig.store.writes_for(decision_id=rig.store.get_decision(p.id).id)
        assert "does not match its audit entry" in w.reason and "MAC" in w.reason
        assert w.written is None
        alarms = [e["what"] for e in audit.entries(rig.store, kind="alarm")]
        assert any(a["kind"] == "audit_mismatch" for a in alarms)
        assert read_opcua(rig.spec, "Tc") == pytest.approx(nominal, abs=1e-4)
    finally:
        rig.close()
