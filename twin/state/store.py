"""The state store: one object over one SQLite file, with one owner module per table group."""

from __future__ import annotations

from twin.state.alarms import AlarmsMixin
from twin.state.plant_state import PlantStateMixin
from twin.state.proposals import ProposalsMixin
from twin.state.sessions import SessionsMixin
from twin.state.shadow import ShadowMixin
from twin.state.steptests import StepTestsMixin
from twin.state.users import UsersMixin
from twin.state.writes import WritesMixin


class Store(
    ProposalsMixin,
    WritesMixin,
    StepTestsMixin,
    UsersMixin,
    SessionsMixin,
    PlantStateMixin,
    AlarmsMixin,
    ShadowMixin,
):
    """The state store of one twin home. Safe to open from several processes at once.

    Proposals and decisions (twin.state.proposals), the write ledger (twin.state.writes),
    step tests, users, log-in sessions (twin.state.sessions), operator limits, incidents and
    the runtime status each have their own module, as do alarms and the shift log (twin.state.alarms)
    and shadow proposals (twin.state.shadow); the connection, transactions
    and the audit entry point are in twin.state.core.
    """
