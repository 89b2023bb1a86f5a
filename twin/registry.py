"""Model versions per plant: save, list, promote / roll back, load.

Layout under home.models_dir(plant):

    v001/model.pt      checkpoint (weights, configs, normalisation, tags, spec hash, metrics,
                       the baselines it was compared with, the disturbance observer's gains
                       fitted on its validation block; a version saved before those loads
                       with the planner's default gains)
    v001/card.json     model card: data window, split, metrics, monitors, training run
    v001/card.md       the same for people
    active.json        {"version": "v001"}; the first version becomes active by itself

Promoting an older version is the rollback.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from twin.arx import ArxModel
from twin.errors import BadInput
from twin.model.faults import DETECTION_COLUMNS, detection_rows
from twin.model.obs_model import ObservationModel
from twin.model.twin_model import TwinModel
from twin.paths import Home
from twin.plan.observer import ObserverGains, fit_gains_on_series
from twin.spec import PlantSpec

if TYPE_CHECKING:
    from twin.train import TrainOutcome

log = logging.getLogger(__name__)

VERSION = re.compile(r"^v(\d{3,})$")
ACTIVE_FILE = "active.json"


class ModelNotFound(BadInput):
    """No such model version (or no model at all) for a plant."""


def _plant_name(plant: str | PlantSpec) -> str:
    return plant.name if isinstance(plant, PlantSpec) else str(plant)


def _home(home: Home | Path | str) -> Home:
    return home if isinstance(home, Home) else Home.at(home)


def versions(home: Home | Path | str, plant: str | PlantSpec) -> list[str]:
    """Version ids of a plant, oldest first."""
    d = _home(home).models_dir(_plant_name(plant))
    if not d.is_dir():
        return []
    found = [
        (int(m.group(1)), p.name)
        for p in d.iterdir()
        if (m := VERSION.match(p.name)) and (p / "model.pt").is_file()
    ]
    return [name for _, name in sorted(found, key=lambda f: f[0])]


def active_version(home: Home | Path | str, plant: str | PlantSpec) -> str | None:
    f = _home(home).models_dir(_plant_name(plant)) / ACTIVE_FILE
    if not f.is_file():
        return None
    return json.loads(f.read_text())["version"]


def _claim_version(models: Path) -> tuple[str, Path]:
    """Create the next version folder atomically (two trainings never get the same id)."""
    models.mkdir(parents=True, exist_ok=True)
    n = max((int(m.group(1)) for p in models.iterdir() if (m := VERSION.match(p.name))), default=0)
    while True:
        n += 1
        version = f"v{n:03d}"
        try:
            (models / version).mkdir()
            return version, models / version
        except FileExistsError:
            continue


def _write_active(models: Path, version: str) -> None:
    tmp = models / (ACTIVE_FILE + ".tmp")
    tmp.write_text(json.dumps({"version": version, "since": datetime.now(UTC).isoformat()}))
    os.replace(tmp, models / ACTIVE_FILE)


def save(home: Home, spec: PlantSpec, outcome: TrainOutcome) -> str:
    """Write a new version (checkpoint + model card); the plant's first version becomes active."""
    models = home.models_dir(spec.name)
    version, folder = _claim_version(models)
    tw = outcome.twin
    tw.version = version
    ckpt = tw.checkpoint()
    ckpt["plant"] = spec.name
    ckpt["tags"] = [{"name": t.name, "role": t.role, "unit": t.unit} for t in spec.tags]
    ckpt["baselines"] = {
        "arx": outcome.arx.to_dict(),
        "observation_model": {
            "state_dict": outcome.obs_model.state_dict(),
            "hidden": outcome.obs_model.net[1].out_features,
        },
    }
    card = model_card(spec, version, outcome)
    gains = _fit_observer(outcome)
    if gains is not None:
        ckpt["observer"] = card["observer"] = gains.to_dict()
    ckpt["card"] = card
    tmp = folder / "model.pt.tmp"
    torch.save(ckpt, tmp)
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=str))
    (folder / "card.md").write_text(card_markdown(card))
    os.replace(tmp, folder / "model.pt")  # the version exists only once complete
    if active_version(home, spec) is None:
        _write_active(models, version)
    log.info("saved %s version %s", spec.name, version)
    return version


def _fit_observer(outcome: TrainOutcome) -> ObserverGains | None:
    """The disturbance observer's gains from the twin's validation block (None: too short)."""
    try:
        return fit_gains_on_series(outcome.twin, outcome.series)
    except ValueError as exc:
        log.warning("observer gains not fitted (the planner uses its defaults): %s", exc)
        return None


def observer_gains(ckpt: dict) -> ObserverGains | None:
    """The observer gains saved with a checkpoint; None for a version saved before them."""
    saved = ckpt.get("observer")
    return None if saved is None else ObserverGains.from_dict(saved)


def model_card(spec: PlantSpec, version: str, outcome: TrainOutcome) -> dict[str, Any]:
    # The per-epoch history stays in the card: the control room draws the training curves from it.
    info = dict(outcome.train_info)
    return {
        "plant": spec.name,
        "version": version,
        "created": datetime.now(UTC).isoformat(),
        "spec_hash": spec.spec_hash(),
        "tags": {t.name: t.role for t in spec.tags},
        "data": outcome.series.describe(),
        "evaluation": outcome.report,
        "training": info,
    }


def card_markdown(card: dict[str, Any]) -> str:
    ev = card["evaluation"]
    hs = [str(h) for h in ev["horizons"]]
    lines = [
        f"# {card['plant']} {card['version']}",
        "",
        f"Created {card['created']}; spec hash `{card['spec_hash'][:12]}`.",
        f"Data {card['data']['start']} .. {card['data']['end']} ({card['data']['samples']} samples); "
        f"held-out block from {card['data']['blocks']['test']['start']}.",
        f"Training: {card['training']['seconds']} s, {card['training']['steps']} steps on "
        f"{card['training']['device']}, seed {card['training']['seed']}; {card['training']['stopped']}.",
        "",
        "| model | " + " | ".join(f"NRMSE h{h}" for h in hs) + " |",
        "| --- |" + " --- |" * len(hs),
    ]
    for name, res in ev["models"].items():
        cells = [("-" if res["nrmse"].get(h) is None else f"{res['nrmse'][h]:.3f}") for h in hs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, res in ev.get("ablations", {}).items():
        cells = [("-" if res["nrmse"].get(h) is None else f"{res['nrmse'][h]:.3f}") for h in hs]
        lines.append(f"| ablation: {name} | " + " | ".join(cells) + " |")
    lines += _bands_markdown(ev, hs) + _ood_markdown(ev)
    lines += ["", "## Monitors", ""]
    for k, v in ev["monitors"].items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def _bands_markdown(ev: dict[str, Any], hs: list[str]) -> list[str]:
    bands = ev.get("bands")
    if not bands:
        return []
    lo, hi = bands["band"]
    lines = [
        "",
        f"## Calibrated bands: coverage of the {lo:.0%}-{hi:.0%} band (pinball in CV std units)",
        "",
        "| CV | " + " | ".join(f"h{h}" for h in hs) + " |",
        "| --- |" + " --- |" * len(hs),
    ]
    for cv in bands["coverage"][hs[0]]:
        cells = [f"{bands['coverage'][h][cv]:.2f} ({bands['pinball'][h][cv]:.3f})" for h in hs]
        lines.append(f"| {cv} | " + " | ".join(cells) + " |")
    return lines


def _ood_markdown(ev: dict[str, Any]) -> list[str]:
    ood = ev.get("ood")
    if not ood:
        return []
    lines = [
        "",
        "## Out-of-distribution gate",
        "",
        f"False alarms on the held-out block: {ood['false_alarm']:.2%} of {ood['windows']} "
        f"windows (calibrated for {ood['false_alarm_target']:.0%}, limit "
        f"{ood['false_alarm_limit']:.0%}).",
        "",
        "| " + " | ".join(DETECTION_COLUMNS) + " |",
        "|" + " --- |" * len(DETECTION_COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in detection_rows(ood)]
    return lines


def promote(home: Home | Path | str, plant: str | PlantSpec, version: str) -> None:
    """Make a version active (promoting an older one is the rollback)."""
    home = _home(home)
    if version not in versions(home, plant):
        raise ModelNotFound(_missing(home, plant, version))
    _write_active(home.models_dir(_plant_name(plant)), version)


def _missing(home: Home, plant: str | PlantSpec, version: str | None) -> str:
    name = _plant_name(plant)
    have = versions(home, name)
    if not have:
        return f"plant {name!r} has no trained model in {home.models_dir(name)} (run `twin train {name}`)"
    return f"plant {name!r} has no model version {version!r} (versions: {', '.join(have)})"


def load_checkpoint(
    home: Home | Path | str, plant: str | PlantSpec, version: str | None = None
) -> dict:
    """The raw checkpoint of a version (default: the active one)."""
    home = _home(home)
    version = version or active_version(home, plant)
    if version is None or version not in versions(home, plant):
        raise ModelNotFound(_missing(home, plant, version))
    path = home.models_dir(_plant_name(plant)) / version / "model.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


def _twin_from(ckpt: dict, plant: str | PlantSpec) -> TwinModel:
    if isinstance(plant, PlantSpec):
        have = [t["name"] for t in ckpt["tags"]]
        if have != plant.tag_names:
            raise BadInput(
                f"model {ckpt['version']} of {plant.name!r} was trained on tags {have}, but the spec "
                f"now has {plant.tag_names}; retrain with `twin train {plant.name}`"
            )
        if ckpt.get("spec_hash") != plant.spec_hash():
            log.warning(
                "model %s was trained with a different version of the %s spec",
                ckpt["version"],
                plant.name,
            )
    return TwinModel.from_checkpoint(ckpt)


def load_version(home: Home | Path | str, plant: str | PlantSpec, version: str) -> TwinModel:
    """A given version as a TwinModel (eval mode, CPU)."""
    return _twin_from(load_checkpoint(home, plant, version), plant)


def load_active(home: Home | Path | str, plant: str | PlantSpec) -> TwinModel:
    """The plant's active version as a TwinModel."""
    return _twin_from(load_checkpoint(home, plant), plant)


def load_for_planning(
    home: Home | Path | str, plant: str | PlantSpec, version: str | None = None
) -> tuple[TwinModel, ObserverGains | None]:
    """A version (default: the active one) and the observer gains saved with it."""
    ckpt = load_checkpoint(home, plant, version)
    model = _twin_from(ckpt, plant)
    model.eval()
    return model, observer_gains(ckpt)


def load_baselines(ckpt: dict) -> tuple[ArxModel, ObservationModel]:
    """The ARX and observation-space models stored with a checkpoint."""
    arx = ArxModel.from_dict(ckpt["baselines"]["arx"])
    ob = ckpt["baselines"]["observation_model"]
    roles = ckpt["tag_roles"]
    names = ckpt["normalizer"]["tags"]
    mv_idx = [i for i, n in enumerate(names) if roles[n] == "mv"]
    om = ObservationModel(
        ckpt["window"], len(names), mv_idx, ckpt["samples_per_interval"], ob["hidden"]
    )
    om.load_state_dict(ob["state_dict"])
    om.eval()
    return arx, om


def list_models(home: Home | Path | str, plant: str | PlantSpec) -> list[dict[str, Any]]:
    """One row per version: id, active flag, created, key metrics."""
    home = _home(home)
    active = active_version(home, plant)
    rows = []
    for v in versions(home, plant):
        card_path = home.models_dir(_plant_name(plant)) / v / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        ev = card.get("evaluation", {})
        rows.append(
            {
                "version": v,
                "active": v == active,
                "created": card.get("created"),
                "nrmse": {m: r["nrmse"] for m, r in ev.get("models", {}).items()},
                "monitors": ev.get("monitors", {}),
                "train_seconds": card.get("training", {}).get("seconds"),
            }
        )
    return rows
