"""OPC-UA Sink: writes MV values with each node's own variant type and reads every one back.

A value the node cannot hold exactly (a fraction to an integer node, anything but 0/1 to a
Boolean) is refused before it is sent; a Float node's write is compared with the value rounded
to single precision. A read-back that differs from what was written raises ReadBackMismatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.base import WriteResult, check_writable, protocol_tags
from connectors.errors import ReadBackMismatch
from connectors.opcua_client import (
    OpcuaConnection,
    ResolvedNode,
    open_client,
    resolve_nodes,
)
from twin.errors import ConnectionLost, WriteRejected
from twin.spec import PlantSpec, Tag

_INTEGER_TYPES = {ua.VariantType(i) for i in range(2, 10)}


class OpcuaSink:
    """Writes MV values with the node's own variant type and reads each one back."""

    def __init__(
        self, spec: PlantSpec, conn: OpcuaConnection, tags: list[str] | None = None
    ) -> None:
        self.spec = spec
        self.conn = conn
        self.tags = protocol_tags(spec, tags or [t.name for t in spec.mvs], "opcua")
        self._client: Client | None = None
        self._nodes: dict[str, ResolvedNode] = {}

    async def __aenter__(self) -> Self:
        self._client = await open_client(self.conn)
        try:
            self._nodes = await resolve_nodes(self._client, self.tags, self.conn.endpoint)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=self.conn.timeout_s)

    def _variant(self, tag: Tag, value: float) -> tuple[ua.Variant, float]:
        vtype = self._nodes[tag.name].vtype
        if vtype == ua.VariantType.Boolean:
            if value not in (0.0, 1.0):
                raise WriteRejected(
                    f"tag {tag.name!r}: type mismatch: node holds Boolean, {value} is not 0 or 1"
                )
            return ua.Variant(bool(value), vtype), value
        if vtype in _INTEGER_TYPES:
            if value != round(value):
                raise WriteRejected(
                    f"tag {tag.name!r}: type mismatch: node holds {vtype.name}, "
                    f"{value} is not a whole number"
                )
            return ua.Variant(int(value), vtype), float(int(value))
        if vtype == ua.VariantType.Float:
            return ua.Variant(value, vtype), struct.unpack(">f", struct.pack(">f", value))[0]
        return ua.Variant(float(value), ua.VariantType.Double), float(value)

    async def write(self, values: Mapping[str, float]) -> list[WriteResult]:
        if self._client is None:
            raise ConnectionLost(f"{self.conn.endpoint}: sink is not connected")
        results: list[WriteResult] = []
        for name, value in values.items():
            tag = self.spec.tag(name)
            check_writable(tag, value)
            if name not in self._nodes:
                raise WriteRejected(f"tag {name!r} is not among this sink's tags")
            variant, written = self._variant(tag, float(value))
            node = self._client.get_node(self._nodes[name].nodeid)
            try:
                await node.write_value(ua.DataValue(variant))
                dv = await node.read_data_value()
            except UaStatusCodeError as exc:
                raise WriteRejected(
                    f"tag {name!r}: {self.conn.endpoint} refused the write: {type(exc).__name__}"
                ) from None
            except (TimeoutError, ConnectionError, OSError) as exc:
                raise ConnectionLost(
                    f"tag {name!r}: write to {self.conn.endpoint} failed: {exc}"
                ) from None
            raw = dv.Value.Value if dv.Value is not None else math.nan
            result = WriteResult(name, float(value), written, float(raw), datetime.now(UTC))
            if not result.ok:
                raise ReadBackMismatch(result)
            results.append(result)
        return results
