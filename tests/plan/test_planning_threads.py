"""A planning process uses the threads it is given: with twin.plan.threads at one thread, scipy's
BLAS (called by the refinement's L-BFGS-B every few milliseconds) keeps no worker spinning on a
second core beside the planner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, time
import torch
from tests.plan.test_optimum import CFG, _problem, _static_model
from twin.plan.optimizer import plan
from twin.plan.threads import limit_planning_threads

limit_planning_threads(1)
model, problem = _static_model(), _problem({"y1": 4.0, "y2": 2.5})
plan(model, torch.zeros(2), problem, CFG)
cpu0, own0, start = time.process_time(), time.thread_time(), time.perf_counter()
plans = 0
while time.perf_counter() - start < 2.0:
    plan(model, torch.zeros(2), problem, CFG)
    plans += 1
print(json.dumps({"plans": plans, "process": time.process_time() - cpu0,
                  "thread": time.thread_time() - own0, "torch": torch.get_num_threads()}))
"""


def test_a_planner_limited_to_one_thread_burns_one_core() -> None:
    # A fresh interpreter: the limit is process-wide, and the test process has planned before.
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["plans"] >= 5 and got["torch"] == 1
    # CPU of the whole process over CPU of the planning thread: 1.99 without the limit on a
    # 2-core machine (the spinning BLAS worker), 1.00 with it.
    assert got["process"] / got["thread"] < 1.2, got
