"""Registry (versions, promote / roll back, loading) and the CLI on a small dataset in a real historian."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from twin import registry
from twin.cli import main
from twin.data import PlantSeries
from twin.historian import Historian
from twin.model.ood import DESIGN_FALSE_ALARM, FALSE_ALARM_LIMIT
from twin.paths import Home
from twin.spec import load_spec
from twin.train import train_series

from .conftest import LINEAR_TOML, linear_spec, simulate_linear, tiny_configs


@pytest.fixture(scope="module")
def outcome():
    model_cfg, data_cfg, cfg = tiny_configs()
    series = PlantSeries(simulate_linear(0.5, noise=0.02, seed=7), linear_spec(), data_cfg)
    return train_series(series, model_cfg, replace(cfg, epochs=2, steps_per_epoch=5))


def test_versions_promote_rollback_and_load(tmp_path, outcome):
    home = Home.at(tmp_path)
    spec = linear_spec()
    with pytest.raises(registry.ModelNotFound, match="twin train lin"):
        registry.load_active(home, spec)
    v1 = registry.save(home, spec, outcome)
    v2 = registry.save(home, spec, outcome)
    assert (v1, v2) == ("v001", "v002")
    assert registry.active_version(home, "lin") == "v001"  # the first version only
    registry.promote(home, "lin", "v002")
    assert registry.load_active(home, spec).version == "v002"
    registry.promote(home, spec, "v001")  # roll back
    tw = registry.load_active(home, spec)
    assert tw.version == "v001"
    window = torch.randn(3, tw.window, 4)
    ref = outcome.twin
    assert torch.allclose(tw.encode(window), ref.encode(window), atol=1e-6)
    assert tw.ood_threshold == ref.ood_threshold and tw.spec_hash == spec.spec_hash()
    with pytest.raises(registry.ModelNotFound, match="v009"):
        registry.promote(home, spec, "v009")
    rows = registry.list_models(home, spec)
    assert [r["version"] for r in rows] == ["v001", "v002"] and rows[0]["active"]
    card = (home.models_dir("lin") / "v001" / "card.md").read_text()
    assert "NRMSE h1" in card and "effective_rank" in card
    arx, om = registry.load_baselines(registry.load_checkpoint(home, spec, "v001"))
    assert arx.cv == ["y1", "y2"] and om.window == tw.window


def test_loading_against_a_spec_with_other_tags_is_refused(tmp_path, outcome):
    home = Home.at(tmp_path)
    spec = linear_spec()
    registry.save(home, spec, outcome)
    raw = spec.model_dump(mode="json", exclude={"path"})
    raw["tags"] = raw["tags"][:3] + [dict(raw["tags"][3], name="u2")]
    from twin.spec import parse_spec

    other = parse_spec(raw)
    with pytest.raises(registry.BadInput, match="trained on tags"):
        registry.load_active(home, other)


@pytest.mark.timeout(180)
def test_cli_train_evaluate_models(tmp_path, capsys):
    spec_path = tmp_path / "lin" / "plant.toml"
    spec_path.parent.mkdir()
    spec_path.write_text(LINEAR_TOML)
    spec = load_spec(spec_path)
    home = tmp_path / "home"
    with Historian(Home.at(home).historian_dir("lin")) as hist:
        hist.append_wide(simulate_linear(0.75, noise=0.02, seed=8))
    base = ["--home", str(home)]
    assert main(["train", str(spec_path), "--quick", "--seed", "1", *base]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "v001"
    quick2 = ["--quick", "--epochs", "2", "--ablations", "latent_losses_off"]
    assert main(["train", str(spec_path), *quick2, *base]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "v002"
    card = registry.load_checkpoint(home, spec, "v002")["card"]
    ablation = card["evaluation"]["ablations"]["latent_losses_off"]
    assert set(ablation["nrmse"]) == {str(h) for h in card["evaluation"]["horizons"]}
    card_md = (Home.at(home).models_dir("lin") / "v002" / "card.md").read_text()
    assert "ablation: latent_losses_off" in card_md and "Out-of-distribution gate" in card_md
    margins = card["evaluation"]["ood"]["detection_margin"]
    for kind in ("stuck", "drift", "bias"):  # the card's row: rate, then the median peak
        assert f" | {margins[kind]:.2f} |" in card_md.split(f"| {kind} |", 1)[1].split("\n")[0]
    assert main(["train", str(spec_path), "--quick", "--ablations", "no_such", *base]) == 2

    assert main(["evaluate", str(spec_path), "--json", *base]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == "v001"
    assert set(report["models"]) == {"jepa", "persistence", "arx", "observation_model"}
    for model in report["models"].values():
        assert set(model["nrmse"]) == {str(h) for h in report["horizons"]}
    assert {
        "sigreg_train",
        "sigreg_heldout",
        "min_dim_std",
        "effective_rank",
        "action_usage",
        "ood_threshold",
    } <= set(report["monitors"])
    assert report["models"]["arx"]["nrmse"]["1"] < report["models"]["persistence"]["nrmse"]["5"]
    for h in map(str, report["horizons"]):
        assert set(report["bands"]["coverage"][h]) == {"y1", "y2"}
        assert 0.0 <= report["bands"]["coverage_mean"][h] <= 1.0
        assert report["bands"]["pinball_mean"][h] > 0
    assert report["ood"]["false_alarm_target"] == DESIGN_FALSE_ALARM
    assert report["ood"]["false_alarm_limit"] == FALSE_ALARM_LIMIT
    ood = report["ood"]
    parts = ("false_alarm_latent", "false_alarm_window_checks", "false_alarm_innovation")
    assert max(ood[k] for k in parts) <= ood["false_alarm"] <= sum(ood[k] for k in parts)
    refused = round(ood["false_alarm"] * ood["windows"])
    assert (refused > 0) <= ood["false_alarm_episodes"] <= refused
    assert 0 <= ood["windows_outside_range"] <= ood["windows"]
    assert 0 <= ood["false_alarm_inside_range"] <= 1
    assert set(report["ood"]["detection"]) == {"stuck", "drift", "bias"}
    assert main(["evaluate", str(spec_path), *base]) == 0
    text = capsys.readouterr().out
    assert "calibrated 5%-95% band" in text and "OOD gate" in text

    assert main(["models", "promote", str(spec_path), "v002", *base]) == 0
    capsys.readouterr()
    assert main(["models", str(spec_path), "--json", *base]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows if r["active"]] == ["v002"]
    assert main(["evaluate", str(spec_path), "--version", "v007", *base]) == 2
    assert main(["models", "promote", str(spec_path), *base]) == 2
    assert registry.load_active(home, spec).version == "v002"


def test_cli_train_without_data_is_bad_input(tmp_path, capsys):
    spec_path = tmp_path / "plant.toml"
    spec_path.write_text(LINEAR_TOML)
    assert main(["train", str(spec_path), "--quick", "--home", str(tmp_path / "h")]) == 2
    assert "twin generate" in capsys.readouterr().err.replace("\n", "")
