"""The state store: the one owner of SQL in the project (see docs/architecture.md)."""

from twin.state.base import (
    NotFound,
    StoreConfig,
    StoreError,
    inserted_id,
    iso,
    now_utc,
    parse_ts,
    to_json,
)
from twin.state.db import StoreIntegrityError
from twin.state.proposals import PROPOSAL_OPEN, PROPOSAL_STATES, ProposalClosed
from twin.state.records import (
    DecisionRecord,
    IncidentRecord,
    ProposalRecord,
    RuntimeStatus,
    StepTestRecord,
    UserRecord,
    WriteRecord,
)
from twin.state.schema import SCHEMA_VERSION
from twin.state.store import Store
from twin.state.users import UserExists
from twin.state.writes import DecisionTaken, WriteSettlement

__all__ = [
    "PROPOSAL_OPEN",
    "PROPOSAL_STATES",
    "SCHEMA_VERSION",
    "DecisionRecord",
    "DecisionTaken",
    "IncidentRecord",
    "NotFound",
    "ProposalClosed",
    "ProposalRecord",
    "RuntimeStatus",
    "StepTestRecord",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoreIntegrityError",
    "UserExists",
    "UserRecord",
    "WriteRecord",
    "WriteSettlement",
    "inserted_id",
    "iso",
    "now_utc",
    "parse_ts",
    "to_json",
]
