"""The plant connection `twin serve` reads from and writes to."""

from __future__ import annotations

from typing import Any

from twin.errors import BadInput
from twin.paths import Home
from twin.spec import PlantSpec


def open_connections(spec: PlantSpec, home: Home, kind: str) -> tuple[Any, Any]:
    """The Source and Sink of the chosen protocol (not yet entered)."""
    if kind == "opcua":
        from connectors.opcua import OpcuaSource
        from connectors.opcua_client import OpcuaConnection
        from connectors.opcua_sink import OpcuaSink

        if spec.source.opcua is None:
            raise BadInput(
                f"plant {spec.name!r} has no [source.opcua] section (try --source modbus)"
            )
        conn = OpcuaConnection.from_spec(spec, home)
        return OpcuaSource(spec, conn), OpcuaSink(spec, conn)
    from connectors.modbus import ModbusConnection, ModbusSink, ModbusSource

    if spec.source.modbus is None:
        raise BadInput(f"plant {spec.name!r} has no [source.modbus] section (try --source opcua)")
    mconn = ModbusConnection.from_spec(spec)
    return ModbusSource(spec, mconn), ModbusSink(spec, mconn)
