"""One runtime per plant and home: a second `twin serve` on the same plant is refused.

An advisory lock (flock) held for the runtime's life: the operating system releases it when
the process ends, however it ends (SIGKILL included), so a crash never leaves a stale lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from twin.errors import BadInput


class PlantLock:
    def __init__(self, path: Path, plant: str) -> None:
        self.path, self.plant = path, plant
        self._fd: int | None = None

    def __enter__(self) -> PlantLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BadInput(
                f"plant {self.plant!r}: a runtime is already serving it (pid {holder}, lock "
                f"{self.path}); stop it first: two runtimes must never write to one plant"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
