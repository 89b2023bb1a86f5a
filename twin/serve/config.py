"""How `twin serve` runs, and what a run did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from twin.errors import BadInput

Mode = Literal["advisory", "supervised", "auto"]
MODES: tuple[str, ...] = ("advisory", "supervised", "auto")
ACTOR = "runtime"
"""Who the runtime is in the audit log."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How `twin serve` runs."""

    mode: Mode = "supervised"
    """advisory: proposals only; supervised: approved proposals are written; auto: self-approved."""
    source: Literal["opcua", "modbus"] = "opcua"
    """Which of the spec's sources to read from and write to."""
    steps: int | None = None
    """Stop after this many control intervals (plant clock); None runs until stopped."""
    poll_s: float = 0.2
    """How often (wall clock) approvals, aborts and expiries are picked up."""
    heartbeat_s: float = 1.0
    """How often (wall clock) the status row in the state store is refreshed."""
    flush_interval_s: float = 1.0
    """Historian buffer flush interval."""
    reconnect_s: float = 2.0
    """Wait between attempts to reach a plant that is down at start."""
    readback_rel_tol: float = 1e-5
    """Relative tolerance when reconciling an interrupted write with the live value (float32)."""
    shadow: str | None = None
    """Model version planning beside the active one, writing nothing (twin.serve.shadow)."""
    retrain_on_drift: Literal["off", "full", "quick"] = "off"
    """When the drift alarm fires: retrain on the live history since its onset (a `twin retrain`
    process at low priority; quick: `twin train --quick`'s configs) and put the new version in
    shadow. Promotion stays gated and by hand (twin.serve.retrainer)."""
    planning_threads: int = 1
    """torch's intra-op threads and the BLAS libraries' threads in `twin serve`
    (twin.plan.threads). A decision's tensors are small: on a 2-core machine under load, two
    torch threads waiting on each other made one plan of the faults suite's twin take 1.5-18 s
    against 0.3-1.5 s on one, and scipy's BLAS kept a second core spinning while it planned
    (the control and plan benchmarks also plan on one thread)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadInput(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.source not in ("opcua", "modbus"):
            raise BadInput(f"--source {self.source!r}: use opcua or modbus")
        if self.retrain_on_drift not in ("off", "full", "quick"):
            raise BadInput(f"--retrain-on-drift {self.retrain_on_drift!r}: use off, full or quick")
        if self.planning_threads < 1:
            raise BadInput(f"planning_threads {self.planning_threads}: must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise BadInput(f"--steps {self.steps}: must be at least 1")


@dataclass
class RunSummary:
    """What a `twin serve` run did."""

    steps: int = 0
    proposals: int = 0
    no_proposals: int = 0
    writes: int = 0
    refused: int = 0
    alarms: int = 0
    reasons: list[str] = field(default_factory=list)
