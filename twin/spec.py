"""The plant spec: `plant.toml` loaded into validated pydantic models.

The format is a contract (see docs/architecture.md): tools outside the project write these files, so
every error names the file, the key and the reason, and unknown keys are errors rather than
silently ignored settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from twin.errors import SpecError
from twin.spec_sections import (
    NODE_ID,
    PLANTS_DIR,
    SECURITY_MODES,
    TAG_NAME,
    ModbusAddress,
    ModbusSource,
    Objective,
    OpcuaSource,
    PlantInfo,
    Safety,
    SimulatorRef,
    Sources,
    Tag,
    _KeyedError,
    _Strict,
)

__all__ = [
    "NODE_ID",
    "PLANTS_DIR",
    "SECURITY_MODES",
    "TAG_NAME",
    "ModbusAddress",
    "ModbusSource",
    "Objective",
    "OpcuaSource",
    "PlantInfo",
    "PlantSpec",
    "Safety",
    "SimulatorRef",
    "Sources",
    "Tag",
    "builtin_plants",
    "load_spec",
    "parse_spec",
    "resolve_spec_path",
]


class PlantSpec(_Strict):
    plant: PlantInfo
    source: Sources = Field(default_factory=Sources)
    tags: list[Tag]
    objective: Objective = Field(default_factory=Objective)
    safety: Safety = Field(default_factory=Safety)
    simulator: SimulatorRef | None = None

    path: Path | None = Field(default=None, exclude=True)
    """Where the spec was loaded from (not part of the file)."""

    @model_validator(mode="after")
    def _cross_checks(self) -> PlantSpec:
        names = [t.name for t in self.tags]
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise _KeyedError(f"tags[{i}].name", f"duplicate tag name {n!r}")
            seen.add(n)
        if not self.tags:
            raise _KeyedError("tags", "a plant needs at least one tag")
        if not any(t.role == "mv" for t in self.tags):
            pass  # a monitoring-only plant is allowed: nothing will ever be proposed
        self._check_sources()
        self._check_objective()
        return self

    def _check_sources(self) -> None:
        for i, t in enumerate(self.tags):
            if self.source.opcua is not None and t.opcua is None:
                raise _KeyedError(
                    f"tags[{i}].opcua",
                    f"tag {t.name!r} has no OPC-UA node id, but the plant has an OPC-UA source (source.opcua)",
                )
            if self.source.modbus is not None and t.modbus is None:
                raise _KeyedError(
                    f"tags[{i}].modbus",
                    f"tag {t.name!r} has no Modbus address, but the plant has a Modbus source (source.modbus)",
                )
            if (
                t.role == "mv"
                and t.modbus is not None
                and t.modbus.table not in ("holding", "coil")
            ):
                raise _KeyedError(
                    f"tags[{i}].modbus.table",
                    f"MV {t.name!r} must be writable: table 'holding' or 'coil', not {t.modbus.table!r}",
                )
        used: dict[tuple[str, int], str] = {}
        for i, t in enumerate(self.tags):
            if t.modbus is None:
                continue
            for reg in range(t.modbus.address, t.modbus.address + t.modbus.width):
                other = used.get((t.modbus.table, reg))
                if other is not None:
                    raise _KeyedError(
                        f"tags[{i}].modbus.address",
                        f"tag {t.name!r} overlaps {other!r} at {t.modbus.table} register {reg}",
                    )
                used[(t.modbus.table, reg)] = t.name
        node_ids: dict[str, str] = {}
        for i, t in enumerate(self.tags):
            if t.opcua is None:
                continue
            if t.opcua in node_ids:
                raise _KeyedError(
                    f"tags[{i}].opcua", f"tag {t.name!r} reuses node id of {node_ids[t.opcua]!r}"
                )
            node_ids[t.opcua] = t.name

    def _check_objective(self) -> None:
        by_name = {t.name: t for t in self.tags}
        for key, mapping, roles in (
            ("objective.setpoints", self.objective.setpoints, ("cv",)),
            ("objective.weights", self.objective.weights, ("cv",)),
            ("objective.move_weights", self.objective.move_weights, ("mv",)),
            ("objective.economic", self.objective.economic, ("cv", "mv", "dv")),
        ):
            for name, value in mapping.items():
                tag = by_name.get(name)
                if tag is None:
                    raise _KeyedError(f"{key}.{name}", f"no tag named {name!r}")
                if tag.role not in roles:
                    raise _KeyedError(
                        f"{key}.{name}", f"{name!r} is a {tag.role}, expected {' or '.join(roles)}"
                    )
                if not math.isfinite(value):
                    raise _KeyedError(f"{key}.{name}", f"{value} is not a finite number")
                if key != "objective.setpoints" and key != "objective.economic" and value < 0:
                    raise _KeyedError(f"{key}.{name}", f"weight {value} must not be negative")
        for name, value in self.objective.setpoints.items():
            lo, hi = by_name[name].operating_limits
            if not lo <= value <= hi:
                raise _KeyedError(
                    f"objective.setpoints.{name}",
                    f"setpoint {value} lies outside the operating limits [{lo}, {hi}]",
                )

    # ---- convenience ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.plant.name

    @property
    def tag_names(self) -> list[str]:
        return [t.name for t in self.tags]

    def tag(self, name: str) -> Tag:
        for t in self.tags:
            if t.name == name:
                return t
        raise KeyError(f"plant {self.name!r} has no tag {name!r}")

    def by_role(self, *roles: str) -> list[Tag]:
        return [t for t in self.tags if t.role in roles]

    @property
    def cvs(self) -> list[Tag]:
        return self.by_role("cv")

    @property
    def mvs(self) -> list[Tag]:
        return self.by_role("mv")

    @property
    def dvs(self) -> list[Tag]:
        return self.by_role("dv")

    @property
    def folder(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    @property
    def proposal_ttl_s(self) -> float:
        return self.safety.proposal_ttl_s or 2 * self.plant.control_interval_s

    def hold_s(self, tag: str) -> float | None:
        """How long a tag's last value stands for the present when no new sample arrives:
        its max age under a report-by-exception source, None (not at all) otherwise."""
        opcua = self.source.opcua
        if opcua is None or not opcua.report_by_exception:
            return None
        own = self.tag(tag).max_age_s
        return float(own if own is not None else opcua.max_age_s)

    def max_age_s(self, tag: str) -> float:
        """The oldest a tag's newest sample may be for proposals and writes (safety rule 3)."""
        held = self.hold_s(tag)
        return held if held is not None else float(self.safety.max_staleness_s)

    def simulator_path(self) -> Path | None:
        """The simulator file for this plant, or None when it has none."""
        if self.folder is None:
            return None
        ref = self.simulator or SimulatorRef()
        candidate = (self.folder / ref.file).resolve()
        if candidate.is_file():
            return candidate
        if self.simulator is not None:
            raise SpecError(self.path or "<spec>", "simulator.file", f"{candidate} does not exist")
        return None

    def resolve(self, relative: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        p = Path(relative).expanduser()
        if not p.is_absolute() and self.folder is not None:
            p = self.folder / p
        return p

    def spec_hash(self) -> str:
        """Stable hash of the spec's content (not its location)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# ---- loading ---------------------------------------------------------------------------


def builtin_plants() -> list[str]:
    """Names of the plants that ship with the project."""
    return sorted(p.parent.name for p in PLANTS_DIR.glob("*/plant.toml"))


def resolve_spec_path(ref: str | Path) -> Path:
    """A built-in plant name, a plant folder or a plant.toml path -> the plant.toml path."""
    p = Path(ref).expanduser()
    if p.is_file():
        return p.resolve()
    if p.is_dir() and (p / "plant.toml").is_file():
        return (p / "plant.toml").resolve()
    name = str(ref)
    if TAG_NAME.match(name) and (PLANTS_DIR / name / "plant.toml").is_file():
        return PLANTS_DIR / name / "plant.toml"
    known = ", ".join(builtin_plants()) or "none"
    raise SpecError(
        ref, "plant", f"no built-in plant named {name!r} and no such file (built-in: {known})"
    )


def load_spec(ref: str | Path) -> PlantSpec:
    """Load and validate a plant spec from a built-in name or a path."""
    path = resolve_spec_path(ref)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "(syntax)", f"not valid TOML: {exc}") from exc
    except OSError as exc:
        raise SpecError(path, "(file)", f"cannot read: {exc.strerror}") from exc
    return parse_spec(raw, path)


def parse_spec(raw: dict[str, Any], path: Path | None = None) -> PlantSpec:
    """Validate an already-parsed TOML document."""
    where = path if path is not None else "<spec>"
    try:
        spec = PlantSpec.model_validate(raw)
    except ValidationError as exc:
        raise _spec_error_from(exc, raw, where) from None
    except _KeyedError as exc:
        raise SpecError(where, exc.key, exc.reason) from None
    return spec.model_copy(update={"path": path})


def _spec_error_from(exc: ValidationError, raw: dict[str, Any], where: Path | str) -> SpecError:
    errors = exc.errors()
    first = errors[0]
    ctx_err = first.get("ctx", {}).get("error")
    loc = list(first["loc"])
    if isinstance(ctx_err, _KeyedError):
        prefix = _format_loc(loc, raw) if loc else ""
        key = f"{prefix}.{ctx_err.key}" if prefix else ctx_err.key
        return SpecError(where, key, ctx_err.reason)
    # Pydantic reports errors raised in a model validator at the model's location; our
    # messages already say which field, so the path is the model.
    key = _format_loc(loc, raw)
    kind = first["type"]
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required key is missing"
    else:
        reason = first["msg"].removeprefix("Value error, ")
    more = (
        f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        if len(errors) > 1
        else ""
    )
    return SpecError(where, key, reason + more)


def _format_loc(loc: Iterable[Any], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    label = f"[{item}]({node['name']})"
            parts.append(label)
        else:
            if item in ("function-after", "function-before"):
                continue
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"
