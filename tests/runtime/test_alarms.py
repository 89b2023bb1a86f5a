"""Alarms as ISA-18.2 describes them, through the runtime's Alarms object, twin.alarms_api and
the state store: priorities from the catalogue, the state machine (active, acknowledged,
cleared, normal, shelved with an expiry, out of service), flood suppression, the shift log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.state import backends
from twin import alarms_api, audit
from twin.auth import PermissionDenied, Role, log_in
from twin.errors import BadInput
from twin.sample import Quality, Sample
from twin.serve.alarms import ALARM_CATALOGUE, Alarms
from twin.state import Store
from twin.users import create_user

PASSWORD = "correct horse battery"
PLANT = "cstr"


# The store fixtures of both backends (SQLite, PostgreSQL): every test here runs on each.
backend = backends.backend
store = backends.store


@pytest.fixture
def who(store: Store):
    """A logged-in session per role, plus a second operator for the shift handover."""
    for r in Role:
        create_user(store, r.name.lower(), r, PASSWORD, actor="test")
    create_user(store, "olga", Role.OPERATOR, PASSWORD, actor="test")
    names = [r.name.lower() for r in Role] + ["olga"]
    return {n: log_in(store, n, PASSWORD) for n in names}


def states(store: Store) -> dict[tuple[str, str | None], str]:
    now = datetime.now(UTC)
    return {(a.kind, a.tag): a.state(now) for a in store.alarm_history(PLANT)}


def test_every_known_kind_has_a_priority_and_a_response() -> None:
    kinds = {
        "sensor_fault",
        "clock_jump",
        "write_failed",
        "write_uncertain",
        "readback_mismatch",
        "partial_move",
        "move_unsettled",
        "runtime_error",
        "connection_lost",
        "twin_abstains",
    }
    assert kinds <= set(ALARM_CATALOGUE)
    for kind, cls in ALARM_CATALOGUE.items():
        assert cls.priority in ("urgent", "high", "medium", "low"), kind
        assert len(cls.response) > 30, kind


def test_condition_lifecycle_active_ack_clear_normal(store: Store, who) -> None:
    alarms = Alarms(store, PLANT)
    alarms.condition("sensor_fault", {"Ca": "Ca: stale 40 s"})
    alarms.condition("sensor_fault", {"Ca": "Ca: stale 50 s"})  # the same standing condition
    [a] = store.standing_alarms(PLANT)
    assert (a.kind, a.tag, a.priority, a.state(datetime.now(UTC))) == (
        "sensor_fault",
        "Ca",
        "high",
        "active",
    )
    assert "transmitter" in a.response and alarms.raised == 1
    alarms_api.acknowledge(store, who["operator"], a.id, "on it")
    assert states(store)[("sensor_fault", "Ca")] == "acknowledged"
    with pytest.raises(BadInput, match="acknowledged by operator already"):
        alarms_api.acknowledge(store, who["olga"], a.id)
    alarms.condition("sensor_fault", {})
    assert states(store)[("sensor_fault", "Ca")] == "normal"
    assert store.standing_alarms(PLANT) == []
    # Cleared before anyone acknowledged: it stands until acknowledged.
    alarms.condition("sensor_fault", {"T": "T: bad quality"})
    alarms.condition("sensor_fault", {})
    [b] = store.standing_alarms(PLANT)
    assert b.tag == "T" and b.state(datetime.now(UTC)) == "cleared"
    alarms_api.acknowledge(store, who["operator"], b.id)
    assert store.standing_alarms(PLANT) == []
    kinds = [e["kind"] for e in audit.entries(store, plant=PLANT)]
    assert kinds.count("alarm") == 2 and kinds.count("alarm_clear") == 2
    assert kinds.count("alarm_ack") == 2


def test_one_shot_alarm_stands_until_acknowledged(store: Store, who) -> None:
    alarms = Alarms(store, PLANT)
    alarm = alarms.raise_("write_failed", "Tc", "Tc: device refused", subject="proposal:3")
    assert alarm["priority"] == "high" and list(alarms.recent)[-1]["id"] == alarm["id"]
    [a] = alarms_api.annunciated(store, PLANT)
    assert a.latched and a.state(datetime.now(UTC)) == "active"
    alarms_api.acknowledge(store, who["operator"], a.id)
    assert store.standing_alarms(PLANT) == [] and states(store)[("write_failed", "Tc")] == "normal"


def test_viewer_may_not_acknowledge_or_shelve(store: Store, who) -> None:
    alarms = Alarms(store, PLANT)
    aid = alarms.raise_("partial_move", None, "Tc moved, F did not")["id"]
    with pytest.raises(PermissionDenied, match="viewer"):
        alarms_api.acknowledge(store, who["viewer"], aid)
    with pytest.raises(PermissionDenied, match="viewer"):
        alarms_api.shelve(store, who["viewer"], aid, 30, "maintenance")
    with pytest.raises(PermissionDenied):
        alarms_api.acknowledge(store, "operator", aid)  # a bare name is no session
    with pytest.raises(PermissionDenied, match="operator"):
        alarms_api.set_in_service(store, who["operator"], aid, False, "transmitter swap")
    assert states(store)[("partial_move", None)] == "active"


def test_shelving_hides_until_its_expiry_and_needs_a_reason(store: Store, who) -> None:
    alarms = Alarms(store, PLANT)
    aid = alarms.raise_("clock_jump", None, "the clock leapt 3600 s")["id"]
    with pytest.raises(BadInput, match="reason is required"):
        alarms_api.shelve(store, who["operator"], aid, 30, "  ")
    with pytest.raises(BadInput, match="minutes must be in"):
        alarms_api.shelve(store, who["operator"], aid, 24 * 60, "all day")
    with pytest.raises(BadInput, match="not a number"):
        alarms_api.shelve(store, who["operator"], aid, "soon", "later")  # type: ignore[arg-type]
    until = alarms_api.shelve(store, who["operator"], aid, 30, "server time being fixed")
    now = datetime.now(UTC)
    a = store.get_alarm(aid)
    assert a.state(now) == "shelved" and a.shelved_by == "operator"
    assert alarms_api.annunciated(store, PLANT, now) == []
    # Past the expiry the alarm is back, unacknowledged.
    later = until + timedelta(seconds=1)
    assert a.state(later) == "active"
    assert [x.id for x in alarms_api.annunciated(store, PLANT, later)] == [aid]
    alarms_api.unshelve(store, who["olga"], aid)
    assert store.get_alarm(aid).state(datetime.now(UTC)) == "active"
    alarms_api.set_in_service(store, who["engineer"], aid, False, "clock server replaced")
    assert store.get_alarm(aid).state(datetime.now(UTC)) == "out of service"
    kinds = {e["kind"] for e in audit.entries(store, plant=PLANT)}
    assert {"alarm_shelve", "alarm_unshelve", "alarm_out_of_service"} <= kinds


def gap(tag: str) -> Sample:
    return Sample(datetime.now(UTC), tag, float("nan"), Quality.GAP)


def test_connection_drop_is_one_parent_alarm_not_one_per_tag(store: Store, who) -> None:
    alarms = Alarms(store, PLANT)
    tags = ["Ca", "T", "Tc", "F"]
    alarms.on_batch([gap(t) for t in tags])
    alarms.on_batch([gap(t) for t in tags])  # still down: nothing new
    # The control step then finds every tag stale: grouped under the parent, not annunciated.
    alarms.condition("sensor_fault", {t: f"{t}: stale" for t in tags})
    shown = alarms_api.annunciated(store, PLANT)
    assert [(a.kind, a.priority) for a in shown] == [("connection_lost", "urgent")]
    children = [a for a in store.alarm_history(PLANT) if a.suppressed]
    assert {a.tag for a in children} == set(tags) and {a.parent_id for a in children} == {
        shown[0].id
    }
    assert alarms.raised == 1
    with pytest.raises(BadInput, match="grouped under alarm"):
        alarms_api.acknowledge(store, who["operator"], children[0].id)
    # Data flows again: parent and children clear; the parent awaits acknowledgement.
    alarms.on_batch([Sample(datetime.now(UTC), "Ca", 0.5, Quality.GOOD)])
    [parent] = store.standing_alarms(PLANT)
    assert parent.state(datetime.now(UTC)) == "cleared"
    assert not any(a.active for a in store.alarm_history(PLANT))
    # A fault that outlives the outage is annunciated on its own at its next check.
    alarms.condition("sensor_fault", {"T": "T: bad quality"})
    assert [a.tag for a in alarms_api.annunciated(store, PLANT)] == ["T", None]
    kinds = [e["kind"] for e in audit.entries(store, plant=PLANT)]
    assert kinds.count("alarm_suppressed") == 4 and kinds.count("alarm") == 2


def test_many_tags_at_once_are_one_flood_alarm(store: Store) -> None:
    alarms = Alarms(store, PLANT, flood_min=3)
    alarms.condition("sensor_fault", {t: f"{t}: out of range" for t in ("Ca", "T", "Tc")})
    [parent] = alarms_api.annunciated(store, PLANT)
    assert parent.tag is None and "3 sensor_fault alarms at once" in parent.message
    alarms.condition("sensor_fault", {"Ca": "Ca: out of range"})
    assert store.get_alarm(parent.id).active  # one child still holds
    alarms.condition("sensor_fault", {})
    assert not store.get_alarm(parent.id).active
    # Two at once is not a flood.
    alarms.condition("sensor_fault", {t: "bad" for t in ("Ca", "T")})
    assert sorted(str(a.tag) for a in alarms_api.annunciated(store, PLANT) if a.active) == [
        "Ca",
        "T",
    ]


def test_a_restarted_runtime_does_not_leave_conditions_standing(store: Store) -> None:
    Alarms(store, PLANT).condition("sensor_fault", {"Ca": "Ca: stale"})
    Alarms(store, PLANT)  # the next runtime
    [a] = store.standing_alarms(PLANT)
    assert not a.active and a.state(datetime.now(UTC)) == "cleared"


def test_shift_log_round_trip(store: Store, who) -> None:
    alarms = Alarms(store, PLANT)
    alarms.raise_("readback_mismatch", "Tc", "Tc read back 301.2, wrote 300.0")
    pid = store.add_proposal(
        plant=PLANT,
        mv_values={"Tc": 301.0},
        payload={"summary": "Tc 300 -> 301"},
        data_ts=datetime.now(UTC),
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
        model_version="v1",
        mode="supervised",
    )
    with pytest.raises(BadInput, match="reason is required"):
        alarms_api.handover(store, who["operator"], PLANT, "")
    with pytest.raises(PermissionDenied):
        alarms_api.handover(store, who["viewer"], PLANT, "nothing to say")
    sid = alarms_api.handover(store, who["operator"], PLANT, "Tc valve sticky; watch it")
    entry = store.get_shift_entry(sid)
    assert entry.author == "operator" and entry.notes == "Tc valve sticky; watch it"
    assert [p["what"] for p in entry.pending] == [f"proposal {pid}"]
    assert [a["kind"] for a in entry.standing] == ["readback_mismatch"]
    with pytest.raises(BadInput, match="the next operator"):
        alarms_api.take_over(store, who["operator"], sid)
    alarms_api.take_over(store, who["olga"], sid, "read it")
    back = alarms_api.latest_handover(store, PLANT)
    assert back is not None and (back.acked_by, back.ack_note) == ("olga", "read it")
    with pytest.raises(BadInput, match="acknowledged by olga already"):
        alarms_api.take_over(store, who["admin"], sid)
    kinds = [e["kind"] for e in audit.entries(store, plant=PLANT)]
    assert "shift_handover" in kinds and "shift_takeover" in kinds
