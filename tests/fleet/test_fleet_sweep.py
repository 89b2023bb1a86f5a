"""`twin fleet sweep` with Ray Tune on a local Ray started on demand (2 tiny trials), and the
fleet commands without Ray installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from twin import registry
from twin.cli import main

from .conftest import copy_home


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweep_registers_the_best_trial(tmp_path, capsys, monkeypatch, history) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # no address: a local Ray is started
    home = copy_home(history, tmp_path / "h")
    args = ["fleet", "sweep", "four_tank", "--trials", "2", "--quick", "--max-seconds", "300"]
    assert main([*args, "--cpus", "2", "--json", "--home", str(home)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["version"] == "v001" and registry.active_version(home, "four_tank") == "v001"
    vals = [t["val"] for t in res["trials"]]
    assert len(vals) == 2 and None not in vals, res["trials"]  # both trials scored
    assert res["best_val"] == min(vals)
    assert res["best"] in [t["params"] for t in res["trials"]]
    card = registry.load_checkpoint(home, "four_tank", "v001")["card"]
    # The registered version is the best trial trained again: same seed and data, same score.
    assert card["training"]["best_val"] == res["registered_val"] == res["best_val"]
    assert card["training"]["train_config"]["lr"] == res["best"]["train.lr"]


def test_fleet_without_ray_installed_says_how_to_get_it(tmp_path) -> None:
    code = """
import sys
sys.modules["ray"] = None  # as if Ray were not installed
from twin.cli import main
assert "ray" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
sys.exit(main(["fleet", "train", "cstr", "--home", sys.argv[1]]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "pip install 'plant-twin[fleet]'" in proc.stderr


def test_fleet_bad_input_is_named(tmp_path, capsys) -> None:
    assert main(["fleet", "train", "cstr", "--seeds", "0,x", "--home", str(tmp_path)]) == 2
    assert "--seeds '0,x'" in capsys.readouterr().err
    assert main(["fleet", "train", "cstr", "cstr", "--home", str(tmp_path)]) == 2
    assert "plants given twice: cstr" in capsys.readouterr().err
    assert main(["fleet", "train", "--home", str(tmp_path)]) == 2
    assert "give one or more plants, or --all" in capsys.readouterr().err
