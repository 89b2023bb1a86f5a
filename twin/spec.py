"""The plant spec: `plant.toml` loaded into validated pydantic models.

The format is a contract (see docs/architecture.md): tools outside the project write these files, so
every error names the file, the key and the reason, and unknown keys are errors rather than
silently ignored settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from twin.errors import SpecError

PLANTS_DIR = Path(__file__).resolve().parent.parent / "plants"

TAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Standard OPC-UA node id strings: ns=<idx>;s=|i=|g=|b=..., nsu=<uri>;s=|i=|g=|b=..., or i=<n> in ns 0.
NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:s=.+|i=\d+|g=[0-9A-Fa-f-]{36}|b=.+)$")
SECURITY_MODES = ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")


class _KeyedError(ValueError):
    """Raised inside validators that know the exact key path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# TOML has types: a quoted "5" where a number belongs is an error, not a number, and so is
# true for a number or 1.5 for an integer. Numbers must be finite (no inf or nan).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
# Range bounds are checked for finiteness by _check_range, which names both bounds.
Range = tuple[Annotated[float, Strict()], Annotated[float, Strict()]]


def _check_range(value: Range | None) -> Range | None:
    if value is None:
        return None
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"[{lo}, {hi}] must be finite numbers")
    if lo >= hi:
        raise ValueError(f"lower bound {lo} must be below upper bound {hi}")
    return value


class PlantInfo(_Strict):
    name: str
    """Plant identifier: letters, digits and underscores; names the historian partition."""
    description: str = ""
    """Free text shown in listings and the control room."""
    sample_period_s: Number = Field(gt=0)
    """Tags are sampled this often, in seconds."""
    control_interval_s: Number = Field(gt=0)
    """A proposal at most this often, in seconds; a whole multiple of sample_period_s."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TAG_NAME.match(v):
            raise ValueError(
                f"{v!r} must be letters, digits and underscores, not starting with a digit"
            )
        return v

    @model_validator(mode="after")
    def _interval_multiple(self) -> PlantInfo:
        ratio = self.control_interval_s / self.sample_period_s
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
            raise _KeyedError(
                "control_interval_s",
                f"control_interval_s ({self.control_interval_s}) must be a whole multiple of "
                f"sample_period_s ({self.sample_period_s})",
            )
        return self

    @property
    def samples_per_interval(self) -> int:
        """Samples in one control interval."""
        return int(round(self.control_interval_s / self.sample_period_s))


class OpcuaSource(_Strict):
    endpoint: str
    """opc.tcp:// URL of the server."""
    security: Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"] = "None"
    """Security policy and message mode."""
    certificate: str | None = None
    """Client application certificate (PEM or DER), relative to the spec file."""
    private_key: str | None = None
    """Client private key (PEM), relative to the spec file."""
    server_certificate: str | None = None
    """Server certificate to trust (pinned), relative to the spec file; else the home's trust list."""
    allow_plaintext_password: Bool = False
    """Send the user name and password over security None, in clear text (an isolated lab only)."""
    username_env: str | None = None
    """Environment variable holding the user name; secrets never live in the file."""
    password_env: str | None = None
    """Environment variable holding the password."""
    publishing_interval_ms: Number | None = Field(default=None, gt=0)
    """Subscription publishing interval; defaults to the sample period."""
    report_by_exception: Bool = False
    """The server sends a value only when it changes (timestamps of unchanged values are not
    refreshed): a tag then holds its last value, for at most max_age_s."""
    max_age_s: Number = Field(default=600.0, gt=0)
    """With report_by_exception: how long a value that has not changed is trusted."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"{v!r} must start with opc.tcp://")
        return v


class ModbusSource(_Strict):
    host: str
    """Device address."""
    port: Int = Field(default=502, ge=1, le=65535)
    """TCP port."""
    device_id: Int = Field(default=1, ge=0, le=255)
    """Unit / slave id."""
    word_order: Literal["big", "little"] = "big"
    """Order of 16-bit words in 32-bit values ("big": high word first)."""
    timeout_s: Number = Field(default=2.0, gt=0)
    """Request timeout."""


class Sources(_Strict):
    opcua: OpcuaSource | None = None
    modbus: ModbusSource | None = None


class ModbusAddress(_Strict):
    table: Literal["holding", "input", "coil", "discrete"]
    """Register table."""
    address: Int = Field(ge=0, le=65535)
    """Zero-based register (or bit) address."""
    type: Literal["float32", "int32", "uint32", "int16", "uint16", "bool"] = "float32"
    """Encoding of the value."""
    scale: Number = 1.0
    """Engineering value = raw * scale + offset."""
    offset: Number = 0.0
    """See scale."""
    word_order: Literal["big", "little"] | None = None
    """Overrides the source's word order for this tag."""

    @property
    def width(self) -> int:
        """Registers (or bits) the value occupies."""
        return 2 if self.type in ("float32", "int32", "uint32") else 1

    @model_validator(mode="after")
    def _consistent(self) -> ModbusAddress:
        bit_table = self.table in ("coil", "discrete")
        if bit_table != (self.type == "bool"):
            raise _KeyedError("type", f"type {self.type!r} cannot live in the {self.table!r} table")
        if self.scale == 0:
            raise _KeyedError("scale", "scale must not be zero")
        return self


class Tag(_Strict):
    name: str
    """Tag name, unique in the plant; also the column name in imports and exports."""
    role: Literal["cv", "mv", "dv"]
    """cv: controlled/constrained; mv: manipulated (written back); dv: measured disturbance."""
    unit: str = ""
    """Engineering unit."""
    description: str = ""
    """Free text."""
    opcua: str | None = None
    """OPC-UA node id."""
    modbus: ModbusAddress | None = None
    """Modbus location."""
    limits: Annotated[Range, Field()]
    """Engineering limits: hard, never crossed by a proposal."""
    operating: Range | None = None
    """Operator limits: soft constraints, editable in the control room; default the limits."""
    max_move: Number | None = Field(default=None, gt=0)
    """Largest change per control interval (required for MVs)."""
    max_age_s: Number | None = Field(default=None, gt=0)
    """With a report-by-exception source: this tag's own limit on a held value's age."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TAG_NAME.match(v):
            raise ValueError(
                f"{v!r} must be letters, digits and underscores, not starting with a digit"
            )
        if v == "timestamp":
            raise ValueError("'timestamp' is reserved for the time column of imports")
        return v

    @field_validator("opcua")
    @classmethod
    def _node_id(cls, v: str | None) -> str | None:
        if v is not None and not NODE_ID.match(v):
            raise ValueError(
                f"{v!r} is not an OPC-UA node id (ns=<n>;s=..., ns=<n>;i=..., nsu=<uri>;s=...)"
            )
        return v

    @field_validator("limits", "operating")
    @classmethod
    def _range(cls, v: Range | None) -> Range | None:
        return _check_range(v)

    @model_validator(mode="after")
    def _consistent(self) -> Tag:
        if self.operating is not None:
            lo, hi = self.limits
            olo, ohi = self.operating
            if olo < lo or ohi > hi:
                raise _KeyedError(
                    "operating",
                    f"operating limits [{olo}, {ohi}] lie outside engineering limits [{lo}, {hi}]",
                )
        if self.role == "mv" and self.max_move is None:
            raise _KeyedError(
                "max_move", "an MV needs max_move (largest change per control interval)"
            )
        if self.max_move is not None and self.max_move > self.limits[1] - self.limits[0]:
            raise _KeyedError(
                "max_move", f"max_move {self.max_move} is wider than the limits {list(self.limits)}"
            )
        return self

    @property
    def operating_limits(self) -> Range:
        """Operator limits, falling back to the engineering limits."""
        return self.operating if self.operating is not None else self.limits


class Objective(_Strict):
    setpoints: dict[str, Number] = Field(default_factory=dict)
    """CV targets in engineering units."""
    weights: dict[str, Number] = Field(default_factory=dict)
    """Tracking weight per CV (default 1 for CVs with a setpoint)."""
    move_weights: dict[str, Number] = Field(default_factory=dict)
    """Move-suppression weight per MV (default 0)."""
    economic: dict[str, Number] = Field(default_factory=dict)
    """Optional linear economic cost per unit of a tag's value (positive: cheaper when lower)."""


class Safety(_Strict):
    allow_auto: Bool = False
    """`twin serve --mode auto` refuses unless true (simulators, benchmarks)."""
    max_staleness_s: Number = Field(default=30.0, gt=0)
    """No proposal or write on data older than this."""
    proposal_ttl_s: Number | None = Field(default=None, gt=0)
    """A proposal expires this long after it is made; default two control intervals."""
    fallback: Literal["hold", "linear_mpc", "operator"] = "hold"
    """Who acts when the twin abstains (out of distribution, missing data): hold the MVs, the
    linear (ARX) MPC identified with the twin, or the operator alone (alarm, no proposal).
    Fallback proposals go through the same approval, guard and audit."""
    on_partial_move: Literal["restore", "complete"] = "restore"
    """A multi-MV move that fails part-way: put the MVs already moved back to their prior
    values (restore), or write the rest of the move (complete); both through the guard."""


class SimulatorRef(_Strict):
    file: str = "simulator.py"
    """Python file beside plant.toml that defines the plant's simulator."""


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
