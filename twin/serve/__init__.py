"""`twin serve` in parts: the loop (runtime), the plant clock, the live state, the proposer,
the write path, step-test campaigns, alarms and the one-runtime-per-plant lock.

The runtime itself is imported on first use: it uses the drift monitor (twin.health.monitor),
which uses this package's alarms and live state, so an eager import here made importing the
monitor first fail on the cycle."""

from typing import TYPE_CHECKING, Any

from twin.serve.clock import PlantClock
from twin.serve.config import ACTOR, MODES, Mode, RunSummary, RuntimeConfig
from twin.serve.live import LiveState, LiveUpdate
from twin.serve.proposer import Proposer, TwinProposer

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in ("Runtime", "serve"):
        from twin.serve import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
