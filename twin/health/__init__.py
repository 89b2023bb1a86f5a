"""Keeping the twin true: controller health (how much the controller does, and how the operators
treat it) and drift detection (whether its predictions still hold)."""

from twin.health.drift import DriftState, normalised_errors, page_hinkley
from twin.health.metrics import HealthInputs, controller_health

__all__ = [
    "DriftState",
    "HealthInputs",
    "controller_health",
    "normalised_errors",
    "page_hinkley",
]
