"""Plant registry: built-in plant folders, and the simulator beside any plant.toml.

A plant is found by name (a folder here) or by the path of its plant.toml anywhere on disk;
its simulator is the `simulator.py` beside the spec, loaded by file path, so a plant defined
outside the repository works without touching the project.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from plants.base import PlantModel, SimulatorError
from twin.spec import PlantSpec, builtin_plants

log = logging.getLogger(__name__)

_modules: dict[tuple[Path, float], ModuleType] = {}


def list_plants() -> list[str]:
    """Names of the built-in plants (folders of this package with a plant.toml)."""
    return builtin_plants()


def has_simulator(spec: PlantSpec) -> bool:
    """Whether a simulator file sits beside the spec."""
    return spec.simulator_path() is not None


def load_plant_model(spec: PlantSpec, **options: Any) -> PlantModel:
    """A fresh instance of the PlantModel defined in the simulator file beside the spec.

    `options` go to the model's constructor (e.g. `branch="high"` for the CSTR).
    """
    path = spec.simulator_path()
    if path is None:
        where = spec.folder or "<no folder>"
        raise SimulatorError(
            f"plant {spec.name!r} has no simulator: no simulator.py beside its plant.toml in {where}"
        )
    module = _load_module(path, spec.name)
    cls = _model_class(module, path)
    try:
        model = cls(**options)
    except TypeError as exc:
        raise SimulatorError(f"{path}: {cls.__name__}({options}) failed: {exc}") from exc
    _check_against_spec(model, spec, path)
    return model


def _load_module(path: Path, plant: str) -> ModuleType:
    key = (path, path.stat().st_mtime)
    if key in _modules:
        return _modules[key]
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_twin_plant_{plant}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SimulatorError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running so that dataclasses and pickling inside the module resolve it.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise SimulatorError(f"{path}: failed to load: {type(exc).__name__}: {exc}") from exc
    _modules[key] = module
    return module


def _model_class(module: ModuleType, path: Path) -> type[PlantModel]:
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, PlantModel)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise SimulatorError(
            f"{path}: expected exactly one concrete PlantModel subclass, found {names}"
        )
    return found[0]


def _check_against_spec(model: PlantModel, spec: PlantSpec, path: Path) -> None:
    spec_mvs = tuple(t.name for t in spec.mvs)
    if tuple(model.mv_names) != spec_mvs:
        raise SimulatorError(
            f"{path}: the model's MVs {list(model.mv_names)} differ from the spec's {list(spec_mvs)}"
        )
    missing = [n for n in spec.tag_names if n not in model.output_names]
    if missing:
        raise SimulatorError(f"{path}: the model produces no value for tag(s) {missing}")


__all__ = ["PlantModel", "SimulatorError", "has_simulator", "list_plants", "load_plant_model"]
