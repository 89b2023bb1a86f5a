"""`twin serve` in parts: the loop (runtime), the plant clock, the live state, the proposer,
the write path, step-test campaigns, alarms and the one-runtime-per-plant lock."""

from twin.serve.clock import PlantClock
from twin.serve.config import ACTOR, MODES, Mode, RunSummary, RuntimeConfig
from twin.serve.live import LiveState, LiveUpdate
from twin.serve.proposer import Proposer, TwinProposer
from twin.serve.runtime import Runtime, serve

__all__ = [
    "ACTOR",
    "MODES",
    "LiveState",
    "LiveUpdate",
    "Mode",
    "PlantClock",
    "Proposer",
    "RunSummary",
    "Runtime",
    "RuntimeConfig",
    "TwinProposer",
    "serve",
]
