"""The sections of a plant spec (`[plant]`, `[source.*]`, `[[tags]]`, `[objective]`,
`[safety]`, `[simulator]`) as strict pydantic models; `twin.spec` assembles and loads them."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

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
    """Subscription publishing interval (wall time); default half the sample period, at most 200 ms."""
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
    group: str = ""
    """The plant unit or area the tag belongs to (e.g. "reactor"): the control room shows a
    plant with many tags one group at a time. Default: no group."""
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

    @field_validator("group")
    @classmethod
    def _group(cls, v: str) -> str:
        if v != v.strip() or (v and not v.isprintable()):
            raise ValueError(f"{v!r}: a group name is printable text without surrounding blanks")
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
