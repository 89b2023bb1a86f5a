"""`twin fleet train` on a real Ray cluster: six twins (cstr and four_tank, three seeds each)
registered as `twin train` registers them, with the same held-out figures for the same seed
and data; a plant that cannot train is reported and the others go on."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from twin import registry
from twin.cli import main
from twin.fleet.configs import train_configs
from twin.fleet.jobs import TrainOptions
from twin.paths import Home

from .conftest import PLANTS, copy_home

SEEDS = (0, 1, 2)
# The wall-clock safety net far above what --quick needs, so it never binds: a capped fit is
# not reproducible, and this test compares figures exactly.
QUICK = ["--quick", "--max-seconds", "300"]


def _fleet_train(capsys, home: Path, *args: str) -> tuple[int, list[dict], str]:
    code = main(["fleet", "train", *args, *QUICK, "--json", "--home", str(home)])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_fleet_train_registers_what_twin_train_gives(
    tmp_path, capsys, ray_address, history
) -> None:
    fleet_home = copy_home(history, tmp_path / "fleet")
    empty_plant = tmp_path / "empty" / "plant.toml"  # a valid spec with no history: must fail alone
    empty_plant.parent.mkdir()
    empty_plant.write_text(
        Path("plants/cstr/plant.toml").read_text().replace('name = "cstr"', 'name = "empty"', 1)
    )
    seeds = ",".join(map(str, SEEDS))
    code, results, err = _fleet_train(
        capsys, fleet_home, *PLANTS, str(empty_plant), "--seeds", seeds, "--address", ray_address
    )
    assert code == 1, err  # one plant failed, so the run reports failure ...
    failed = [r for r in results if r["error"]]
    assert [(Path(r["plant"]).parent.name, r["seed"]) for r in failed] == [
        ("empty", s) for s in SEEDS
    ]
    assert all("empty" in r["error"] for r in failed), failed
    assert "3 of 9 twins failed" in err
    trained = [r for r in results if not r["error"]]  # ... after the others were trained
    assert sorted((r["plant"], r["seed"]) for r in trained) == sorted(
        (p, s) for p in PLANTS for s in SEEDS
    )

    twin_home = copy_home(history, tmp_path / "twin")
    for r in trained:
        assert (
            main(["train", r["plant"], "--seed", str(r["seed"]), *QUICK, "--home", str(twin_home)])
            == 0
        )
        version = capsys.readouterr().out.split()[-1]
        fleet_card = registry.load_checkpoint(fleet_home, r["plant"], r["version"])["card"]
        twin_card = registry.load_checkpoint(twin_home, r["plant"], version)["card"]
        assert fleet_card["evaluation"] == twin_card["evaluation"], (r["plant"], r["seed"])
        assert fleet_card["data"] == twin_card["data"]
        assert fleet_card["training"]["best_val"] == twin_card["training"]["best_val"]
        assert r["nrmse"] == {m: x["nrmse"] for m, x in twin_card["evaluation"]["models"].items()}

    for plant in PLANTS:
        # The first version registered is active, the others await promotion, as with twin train.
        rows = registry.list_models(fleet_home, plant)
        assert [row["version"] for row in rows] == ["v001", "v002", "v003"]
        assert [row["active"] for row in rows] == [True, False, False]
        assert {r["version"] for r in trained if r["plant"] == plant} == {"v001", "v002", "v003"}


def test_sweep_configs_are_twin_trains(tmp_path, capsys, history) -> None:
    """The sweep starts from the configs `twin train` used (read back from its checkpoint)."""
    home = copy_home(history, tmp_path / "h")
    assert (
        main(["train", "cstr", "--seed", "4", "--quick", "--epochs", "2", "--home", str(home)]) == 0
    )
    ckpt = registry.load_checkpoint(Home.at(home), "cstr")
    model_cfg, data_cfg, cfg = train_configs(TrainOptions(quick=True, epochs=2), seed=4)
    assert ckpt["model_config"] == asdict(model_cfg)
    assert ckpt["data_config"] == asdict(data_cfg)
    as_json = lambda d: json.loads(json.dumps(d))  # noqa: E731  (tuples and lists alike)
    assert as_json(ckpt["card"]["training"]["train_config"]) == as_json(asdict(cfg))
