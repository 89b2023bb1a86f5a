"""The one-writer-per-plant guard: an advisory fcntl lock that only writers take.

Readers never touch it, so nothing a writer does can block a reader. The kernel drops the
lock when the process dies (SIGKILL included), so a crashed writer never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from twin.errors import HistorianError


class WriterLock:
    """An exclusive, non-blocking lock on `path`, held until release() or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise HistorianError(
                f"{self.path.parent}: another process{holder} is already writing to this historian; "
                "one writer per plant (stop the other ingest/import first; readers are unaffected)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
