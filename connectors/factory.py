"""The spec's Source or Sink for a protocol: what `twin ingest` and `twin serve` open."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from connectors.base import Sink, Source
from twin.errors import BadInput
from twin.paths import Home
from twin.spec import PlantSpec

SourceKind = Literal["opcua", "modbus"]


def _check(spec: PlantSpec, kind: str) -> None:
    if kind not in ("opcua", "modbus"):
        raise BadInput(f"unknown source {kind!r}: opcua or modbus")
    if getattr(spec.source, kind) is None:
        raise BadInput(f"plant {spec.name!r} has no [source.{kind}] section")


def _opcua_conn(spec: PlantSpec, home: Home | None, port: int | None):  # noqa: ANN202
    from connectors.opcua_client import OpcuaConnection

    conn = OpcuaConnection.from_spec(spec, home)
    if port is not None:
        parts = urlsplit(conn.endpoint)
        conn.endpoint = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))
    return conn


def make_source(
    spec: PlantSpec, kind: SourceKind, home: Home | None = None, port: int | None = None
) -> Source:
    """The spec's OPC-UA or Modbus source (not yet entered); `port` overrides the spec's port."""
    _check(spec, kind)
    if kind == "opcua":
        from connectors.opcua import OpcuaSource

        return OpcuaSource(spec, _opcua_conn(spec, home, port))
    from connectors.modbus import ModbusConnection, ModbusSource

    return ModbusSource(spec, ModbusConnection.from_spec(spec, port=port))


def make_sink(
    spec: PlantSpec, kind: SourceKind, home: Home | None = None, port: int | None = None
) -> Sink:
    """The spec's OPC-UA or Modbus sink for its MVs (not yet entered)."""
    _check(spec, kind)
    if kind == "opcua":
        from connectors.opcua_sink import OpcuaSink

        return OpcuaSink(spec, _opcua_conn(spec, home, port))
    from connectors.modbus import ModbusConnection, ModbusSink

    return ModbusSink(spec, ModbusConnection.from_spec(spec, port=port))
