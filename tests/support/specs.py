"""A built-in plant's spec copied for a test or a benchmark: its servers on free local ports, its
simulator by absolute path (the copy lives elsewhere), and the settings the run needs changed.
Every test and benchmark that serves a built-in plant makes its spec here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from tests.support.procs import free_port, twin_cmd
from twin.spec import PLANTS_DIR, PlantSpec

Value = str | float | int | bool


def _toml(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _set_keys(text: str, section: str, values: Mapping[str, Value]) -> str:
    """`section`'s keys set to `values` (each replaced where it stands, or added under the
    header); the section is added at the end when the spec has none."""
    header = f"[{section}]"
    lines = text.splitlines()
    if header not in (line.strip() for line in lines):
        lines += ["", header]
    out: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped == header
            out.append(line)
            if inside:
                out += [f"{k} = {_toml(v)}" for k, v in values.items()]
            continue
        if inside and stripped.split("=", 1)[0].strip() in values:
            continue  # replaced by the line added under the header
        out.append(line)
    return "\n".join(out) + "\n"


def _set_operating(text: str, operating: Mapping[str, tuple[float, float]]) -> str:
    """Each named tag's operating limits replaced."""
    blocks = text.split("[[tags]]")
    for tag, (lo, hi) in operating.items():
        found = False
        for i, block in enumerate(blocks):
            if re.search(rf'^name = "{re.escape(tag)}"$', block, flags=re.M):
                blocks[i] = re.sub(
                    r"^operating = .*$", f"operating = [{lo}, {hi}]", block, flags=re.M
                )
                found = True
        if not found:
            raise ValueError(f"the spec has no tag {tag!r} to set operating limits on")
    return "[[tags]]".join(blocks)


def spec_copy(
    plant: str,
    folder: Path,
    *,
    opcua_port: int | None = None,
    modbus_port: int | None = None,
    safety: Mapping[str, Value] | None = None,
    operating: Mapping[str, tuple[float, float]] | None = None,
    opcua_security: str | None = None,
    simulator: bool = True,
) -> Path:
    """`folder`/plant.toml: the built-in `plant`'s spec with its OPC-UA endpoint and Modbus
    port on free ports (or the ones given), `[safety]` keys set, tags' operating limits
    replaced, the OPC-UA security mode changed and (`simulator`) its simulator by absolute
    path. Returns the file's path."""
    text = (PLANTS_DIR / plant / "plant.toml").read_text(encoding="utf-8")
    op = free_port() if opcua_port is None else opcua_port
    mb = free_port() if modbus_port is None else modbus_port
    text = re.sub(r"opc\.tcp://127\.0\.0\.1:\d+/", f"opc.tcp://127.0.0.1:{op}/", text)
    text = re.sub(r"(\[source\.modbus\][^\[]*?^port = )\d+", rf"\g<1>{mb}", text, flags=re.S | re.M)
    if opcua_security is not None:
        text = _set_keys(text, "source.opcua", {"security": opcua_security})
    if safety:
        text = _set_keys(text, "safety", safety)
    if operating:
        text = _set_operating(text, operating)
    if simulator:
        text = _set_keys(text, "simulator", {"file": str(PLANTS_DIR / plant / "simulator.py")})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plant.toml").write_text(text, encoding="utf-8")
    return folder / "plant.toml"


def ports(spec: PlantSpec) -> tuple[int, int]:
    """The spec's OPC-UA and Modbus ports."""
    assert spec.source.opcua is not None and spec.source.modbus is not None
    endpoint = spec.source.opcua.endpoint
    return int(endpoint.rsplit(":", 1)[1].split("/")[0]), spec.source.modbus.port


def sim_cmd(spec: PlantSpec, speed: float, *extra: str) -> list[str]:
    """`twin sim` serving the spec's plant on the spec's ports, `speed` plant seconds a second."""
    op, mb = ports(spec)
    return twin_cmd(
        "sim",
        str(spec.path),
        "--opcua-port",
        str(op),
        "--modbus-port",
        str(mb),
        "--speed",
        str(speed),
        *extra,
    )
