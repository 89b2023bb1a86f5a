"""What every benchmark's JSON records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU count and the 1-minute load average at the time of writing."""
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
