"""Private files (keys, secrets): created with mode 0600 in one step, never chmod-ed afterwards.

A key written with default permissions and chmod-ed after is readable by anyone who opens it in
between; so the file is created by `os.open(O_CREAT | O_EXCL, 0o600)` under a temporary name,
filled, flushed to disk, and only then given its real name. The umask can only remove bits, so
the mode is never wider than 0600.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600


def write_private(path: Path, data: bytes, *, replace: bool = False) -> bool:
    """Write `data` to a new 0600 file at `path`; returns False when it exists and not `replace`.

    Without `replace` the name is taken with a hard link, which fails if another process made
    the file first: two processes racing to create a key agree on one key.
    """
    # A new folder for keys is the owner's alone; an existing one keeps the mode it was given.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read_private(path: Path) -> bytes:
    """The bytes of a private file; warns when others than the owner may read it."""
    data = path.read_bytes()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %04o): chmod 600 it", path, mode)
    return data
