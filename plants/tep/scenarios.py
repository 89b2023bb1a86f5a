"""Tennessee Eastman scenarios: the base case, a production-rate change and the IDV faults.

Disturbances are IDV activations (0 off, 1 on) by the kernel's names idv_01..idv_28; each
fault starts at 1 h so that the history shows the plant before it. The production change is a
new target for the product flow, which the supervisory layer has to realise by moving the
regulatory layer's production setpoint.
"""

from __future__ import annotations

from plants.base import Scenario, schedule, step

HOUR_S = 3600.0
FAULT_START_S = 1.0 * HOUR_S
BASE_PRODUCT_FLOW = 22.95  # m3/h, Mode 1 stripper underflow (Downs & Vogel 1993)


def _fault(idv: int, description: str) -> Scenario:
    return Scenario(
        f"idv{idv}",
        f"IDV({idv}) {description} from 1 h",
        disturbances={f"idv_{idv:02d}": step(FAULT_START_S, 0.0, 1.0)},
    )


def tep_scenarios() -> dict[str, Scenario]:
    """The scenarios by name."""
    scenarios = [
        Scenario("base", "Mode 1 base case, no disturbance"),
        Scenario(
            "production_change",
            "Product-flow target -10 % at 1 h (22.95 -> 20.66 m3/h), back at 13 h",
            setpoints={
                "product_flow": schedule(
                    BASE_PRODUCT_FLOW,
                    (FAULT_START_S, 0.9 * BASE_PRODUCT_FLOW),
                    (13.0 * HOUR_S, BASE_PRODUCT_FLOW),
                )
            },
        ),
        _fault(1, "A/C feed ratio step, B composition constant (stream 4)"),
        _fault(4, "reactor cooling-water inlet temperature step"),
        _fault(6, "A feed loss (stream 1): the hardest fault"),
        _fault(8, "random variation of the A, B, C feed composition (stream 4)"),
        _fault(13, "slow drift of the reaction kinetics"),
        Scenario(
            "combined",
            "IDV(1) step and IDV(8) random feed composition from 1 h, IDV(13) kinetics drift from 4 h",
            disturbances={
                "idv_01": step(FAULT_START_S, 0.0, 1.0),
                "idv_08": step(FAULT_START_S, 0.0, 1.0),
                "idv_13": step(4.0 * HOUR_S, 0.0, 1.0),
            },
        ),
    ]
    return {s.name: s for s in scenarios}
