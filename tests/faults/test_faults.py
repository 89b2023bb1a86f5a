"""Issue 17's fault cases, one repetition each at 10x plant speed (benchmarks/faults.py repeats them).

Each asserts on the plant's own MV log and the store: no unsafe write, no partial move left
unreconciled, the alarm the fault calls for, and writes resuming once it clears.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cases import CASES, run_case

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(CASES))
def test_fault_case(name: str, tmp_path: Path, mixer_models: Path) -> None:
    result = run_case(CASES[name], tmp_path, mixer_models)
    assert result.writes_before_fault > 0, "the runtime never wrote before the fault"
    problems = result.problems()
    assert not problems, f"{name}: " + "; ".join(problems) + f" ({'; '.join(result.notes)})"
