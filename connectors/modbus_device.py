"""The Modbus device as the connectors see it: where it is (ModbusConnection), and one pymodbus
client whose failures come back typed (DeviceError for a refusal, ConnectionLost for the rest).
No retries inside pymodbus: the source decides when to retry a read, and a write is never
retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from twin.errors import BadInput, ConnectionLost, WriteRejected
from twin.spec import PlantSpec

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass
class ModbusConnection:
    """Where a plant's Modbus device is and how it encodes values."""

    host: str
    """Device address."""
    port: int = 502
    """TCP port."""
    device_id: int = 1
    """Unit id."""
    word_order: str = "big"
    """Order of 16-bit words in 32-bit values (a tag may override it)."""
    timeout_s: float = 2.0
    """Request timeout."""
    poll_interval_s: float | None = None
    """Poll period without a clock block; None: the plant's sample period."""

    @classmethod
    def from_spec(
        cls, spec: PlantSpec, host: str | None = None, port: int | None = None
    ) -> ModbusConnection:
        src = spec.source.modbus
        if src is None:
            raise BadInput(f"plant {spec.name!r} has no [source.modbus]")
        return cls(
            host=host or src.host,
            port=port or src.port,
            device_id=src.device_id,
            word_order=src.word_order,
            timeout_s=src.timeout_s,
        )

    @property
    def where(self) -> str:
        return f"modbus://{self.host}:{self.port} device {self.device_id}"


class DeviceError(Exception):
    """A Modbus exception response (the device understood and refused)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"Modbus exception {code}: {_EXCEPTION_NAMES.get(code, 'unknown')}")


class Device:
    """One pymodbus client with typed errors: DeviceError for refusals, ConnectionLost for the rest."""

    def __init__(self, conn: ModbusConnection) -> None:
        self.conn = conn
        # No automatic reconnects or retries inside pymodbus: the source decides when to retry
        # a read, and a write is never retried.
        self.client = AsyncModbusTcpClient(
            conn.host, port=conn.port, timeout=conn.timeout_s, retries=0, reconnect_delay=0
        )
        self.requests = 0

    async def connect(self) -> None:
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            raise ConnectionLost(f"cannot reach {self.conn.where}: {exc}") from None
        if not ok:
            raise ConnectionLost(f"cannot reach {self.conn.where}: connection refused or timed out")

    def close(self) -> None:
        self.client.close()

    async def read(self, table: str, address: int, count: int) -> list[int]:
        fn = {
            "input": self.client.read_input_registers,
            "holding": self.client.read_holding_registers,
            "coil": self.client.read_coils,
            "discrete": self.client.read_discrete_inputs,
        }[table]
        rr = await self._call(lambda: fn(address, count=count, device_id=self.conn.device_id))
        if table in ("coil", "discrete"):
            return [1 if b else 0 for b in rr.bits[:count]]
        return list(rr.registers)

    async def write(self, table: str, address: int, values: list[int]) -> None:
        dev = self.conn.device_id
        if table == "coil":
            await self._call(
                lambda: self.client.write_coil(address, bool(values[0]), device_id=dev)
            )
        elif table == "holding":
            await self._call(lambda: self.client.write_registers(address, values, device_id=dev))
        else:
            raise WriteRejected(f"{table} registers cannot be written")

    async def _call(self, request: Callable[[], Awaitable[Any]]) -> Any:
        self.requests += 1
        try:
            rr = await request()
        except (ModbusException, OSError, TimeoutError) as exc:
            raise ConnectionLost(f"{self.conn.where}: {exc}") from None
        if rr.isError():
            raise DeviceError(getattr(rr, "exception_code", 0))
        return rr


def honour_swallowed_cancel() -> None:
    """Re-raise a cancellation of the polling task that pymodbus dropped.

    pymodbus awaits each response with `asyncio.wait_for`; on Python 3.11, when the response
    arrives in the same loop turn as a cancellation of our task, wait_for returns the response
    and the CancelledError is lost (the task stays "cancelling"). The polling loop would then
    run on forever and whoever cancelled it (`twin ingest` stopping) would wait forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
