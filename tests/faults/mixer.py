"""The faults suite's own plant, defined outside the repository: a mixing tank with two feeds.

Two MVs (hot and cold feed) so that a move is a multi-MV unit; two CVs (level, temperature);
one measured disturbance. Written into the test's folder as plant.toml + simulator.py, so it
goes through the same spec loader as any site's plant.
"""

from __future__ import annotations

from pathlib import Path

from twin.spec import PlantSpec, load_spec

NAME = "mixer"
CVS = ("level", "temp")
MVS = ("feed_hot", "feed_cold")
SAMPLE_PERIOD_S = 1.0
CONTROL_INTERVAL_S = 5.0
MAX_STALENESS_S = 10.0
PUBLISHING_INTERVAL_MS = 50.0
"""The runtime's subscription publishes every 50 ms of wall time: half a sample at the suite's
speed, as a 200 ms interval is a fifth of a one-second sample on a plant running in real time."""
MAX_MOVE = 5.0
MV_LIMITS = (0.0, 100.0)
MV_OPERATING = (5.0, 95.0)
CV_LIMITS = {"level": (0.0, 10.0), "temp": (0.0, 100.0)}

SIMULATOR = """
import numpy as np
from plants.base import PlantModel

LEVEL_TAU_S = 60.0  # level time constant, s
LEVEL_GAIN_M = 0.05  # steady level per % of total feed, m/%
TEMP_TAU_S = 40.0  # mixing time constant, s
HOT_DEGC = 80.0  # hot feed temperature, degC


class Mixer(PlantModel):
    state_names = ("level", "temp")
    mv_names = ("feed_hot", "feed_cold")
    disturbance_names = ("inlet",)
    output_names = ("level", "temp", "inlet", "feed_hot", "feed_cold")
    time_constant_s = LEVEL_TAU_S

    def __init__(self):
        super().__init__()
        self.noise_std = {"level": 0.01, "temp": 0.05, "inlet": 0.05}
        self.scenarios = {}

    def _mix(self, u, d):
        total = max(u[0] + u[1], 1e-6)
        return (HOT_DEGC * u[0] + d[0] * u[1]) / total

    def derivatives(self, t, x, u, d):
        return np.array([(LEVEL_GAIN_M * (u[0] + u[1]) - x[0]) / LEVEL_TAU_S,
                         (self._mix(u, d) - x[1]) / TEMP_TAU_S])

    def outputs(self, x, u, d):
        return {"level": float(x[0]), "temp": float(x[1]), "inlet": float(d[0]),
                "feed_hot": float(u[0]), "feed_cold": float(u[1])}

    def steady_state(self, u, d):
        return np.array([LEVEL_GAIN_M * (u[0] + u[1]), self._mix(u, d)])

    def nominal(self):
        return np.array([40.0, 40.0]), np.array([15.0])
"""


def spec_text(endpoint: str, *, report_by_exception: bool = False) -> str:
    # The spec gains a report-by-exception key in issue 17; it is written only once the
    # loader knows it, since an unknown key is (rightly) an error.
    rbe = "report_by_exception = true\n" if report_by_exception and _spec_knows_rbe() else ""
    mv_tags = "".join(
        f"""
[[tags]]
name = "{mv}"
role = "mv"
unit = "%"
opcua = "ns=2;s={NAME}.{mv}"
limits = [{MV_LIMITS[0]}, {MV_LIMITS[1]}]
operating = [{MV_OPERATING[0]}, {MV_OPERATING[1]}]
max_move = {MAX_MOVE}
"""
        for mv in MVS
    )
    return f"""[plant]
name = "{NAME}"
description = "Mixing tank with a hot and a cold feed (faults suite)"
sample_period_s = {SAMPLE_PERIOD_S}
control_interval_s = {CONTROL_INTERVAL_S}

[source.opcua]
endpoint = "{endpoint}"
security = "None"
publishing_interval_ms = {PUBLISHING_INTERVAL_MS}
{rbe}
[[tags]]
name = "level"
role = "cv"
unit = "m"
opcua = "ns=2;s={NAME}.level"
limits = [0.0, 10.0]
operating = [1.0, 8.0]

[[tags]]
name = "temp"
role = "cv"
unit = "degC"
opcua = "ns=2;s={NAME}.temp"
limits = [0.0, 100.0]
operating = [20.0, 80.0]

[[tags]]
name = "inlet"
role = "dv"
unit = "degC"
opcua = "ns=2;s={NAME}.inlet"
limits = [-10.0, 60.0]
{mv_tags}
[objective]
setpoints = {{ level = 4.5, temp = 50.0 }}
weights = {{ level = 1.0, temp = 0.1 }}
move_weights = {{ feed_hot = 0.01, feed_cold = 0.01 }}

[safety]
allow_auto = true
max_staleness_s = {MAX_STALENESS_S}
fallback = "linear_mpc"
"""


def _spec_knows_rbe() -> bool:
    from twin.spec import OpcuaSource

    return "report_by_exception" in OpcuaSource.model_fields


def write_plant(folder: Path, endpoint: str, *, report_by_exception: bool = False) -> PlantSpec:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "simulator.py").write_text(SIMULATOR)
    (folder / "plant.toml").write_text(spec_text(endpoint, report_by_exception=report_by_exception))
    return load_spec(folder / "plant.toml")
