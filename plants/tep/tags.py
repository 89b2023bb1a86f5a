"""The Tennessee Eastman tags: the 41 XMEAS in kernel order, the computed cost, the 9 setpoints.

One table, so the spec, the simulator and the tests agree on which kernel signal a tag is.
Analyser timing is the revised model's (Downs & Vogel 1993, Table 5): the gas analysers on
the reactor feed and the purge report every 0.1 h the sample taken 0.1 h before; the product
analyser every 0.25 h the sample taken 0.25 h before. The kernel holds each reading until
the next one, as an analyser's output does.
"""

from __future__ import annotations

from dataclasses import dataclass

GAS_ANALYSER_PERIOD_S = 360.0  # reactor-feed and purge analysers: sample and dead time 0.1 h
PRODUCT_ANALYSER_PERIOD_S = 900.0  # product analyser: sample and dead time 0.25 h

# XMEAS(1..41) in kernel order: tag names of the plant.toml.
XMEAS_TAGS: tuple[str, ...] = (
    "feed_a_flow",
    "feed_d_flow",
    "feed_e_flow",
    "feed_ac_flow",
    "recycle_flow",
    "reactor_feed_flow",
    "reactor_pressure",
    "reactor_level",
    "reactor_temperature",
    "purge_flow",
    "separator_temperature",
    "separator_level",
    "separator_pressure",
    "separator_underflow",
    "stripper_level",
    "stripper_pressure",
    "product_flow",
    "stripper_temperature",
    "stripper_steam_flow",
    "compressor_work",
    "reactor_cw_outlet_temperature",
    "condenser_cw_outlet_temperature",
    *(f"reactor_feed_{c}" for c in "abcdef"),
    *(f"purge_{c}" for c in "abcdefgh"),
    *(f"product_{c}" for c in "defgh"),
)

COST_TAG = "operating_cost"
"""Operating cost in $/h, the standard formula on measured values, as a DCS calculation."""


def analyser_period_s(tag: str) -> float | None:
    """Seconds between a tag's analyser readings, or None for a continuous measurement."""
    if tag.startswith(("reactor_feed_", "purge_")) and tag not in (
        "reactor_feed_flow",
        "purge_flow",
    ):
        return GAS_ANALYSER_PERIOD_S
    if tag.startswith("product_") and tag != "product_flow":
        return PRODUCT_ANALYSER_PERIOD_S
    return None


@dataclass(frozen=True)
class SetpointTag:
    """A supervisory setpoint the twin writes: a spec MV bound to a regulatory-layer loop."""

    tag: str
    """MV tag name in plant.toml."""
    field: str
    """Field of tep_studio's ControllerSetpoints it sets."""


# The spec's MV order; Ricker's (1996) decentralised layer exposes exactly these targets.
SETPOINT_TAGS: tuple[SetpointTag, ...] = (
    SetpointTag("sp_production", "production_rate"),
    SetpointTag("sp_product_g", "pct_g"),
    SetpointTag("sp_reactor_pressure", "reactor_pressure"),
    SetpointTag("sp_reactor_temperature", "reactor_temperature"),
    SetpointTag("sp_reactor_level", "reactor_level"),
    SetpointTag("sp_separator_level", "separator_level"),
    SetpointTag("sp_stripper_level", "stripper_level"),
    SetpointTag("sp_reactor_feed_ya", "ya"),
    SetpointTag("sp_reactor_feed_yac", "yac"),
)
