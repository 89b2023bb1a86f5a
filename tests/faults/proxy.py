"""A TCP proxy on 127.0.0.1 between the runtime and the plant that can cut or stall on command.

`drop()` closes both sides of every open connection at once (new ones are accepted again);
`stall()` stops forwarding in both directions, holding the bytes, until `resume()`. Called
from the plant's write hook, either lands exactly between an MV write and its read-back.
`kill()` is what the network sees of a killed server process: every connection cut and new ones
refused, at once, until `start()` listens again.
"""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.drops = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def drop(self) -> None:
        """Cut every open connection, both sides, now."""
        self.drops += 1
        pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for w in (a, b):
                w.transport.abort()
        self._flowing.set()

    def kill(self) -> None:
        """Stop listening and cut every open connection, both in this call."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_w)
        self._pairs.append(pair)
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        with contextlib.suppress(ValueError):
            self._pairs.remove(pair)
        for w in pair:
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
