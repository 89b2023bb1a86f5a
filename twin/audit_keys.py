"""What keys and anchors the audit log: HMAC keys and the head file, both outside the database.

The audit log lives in `state.db`; whoever can write that file can rewrite it. Two things that
live elsewhere make such a rewrite visible:

- a key ring (`Home.keys_dir`): each entry's hash is HMAC-SHA256-ed with the current key, so an
  entry altered by someone without the key no longer verifies; keys are numbered k1, k2, ...
  and a rotation is itself an audit entry (see `twin.audit.rotate_key`);
- an anchor (`Home.audit_anchor`): an append-only text file with one `seq hash` line per
  committed transaction (its head), so a database truncated or replaced by an older copy (whose entries all
  still verify) falls short of the head the anchor remembers.

Anchor lines are written when the transaction that holds the entry commits, never before: a
line for an entry that was rolled back would later look like a deleted entry. The state store's
transaction runs the queued line after its COMMIT (`twin.state.db.Db.after_commit`) and drops
it on ROLLBACK. No SQL lives here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from twin.errors import TwinError
from twin.keyfiles import read_private, write_private
from twin.paths import Home

log = logging.getLogger(__name__)

_KEY_NAME = re.compile(r"^audit-k(\d+)\.key$")


class AuditKeyError(TwinError):
    """An audit key that is missing or unreadable: entries cannot be keyed or verified."""


@dataclass(frozen=True)
class AuditFiles:
    """Where one state store's audit keys and anchor live."""

    keys_dir: Path | None
    """Key ring folder; None: entries are chained but not keyed (the plain chain)."""
    anchor: Path | None
    """Anchor file; None: heads are not anchored."""

    @cached_property
    def ring(self) -> Keyring | None:
        """The key ring (one object per AuditFiles: every append of a store asks for it)."""
        return Keyring(self.keys_dir) if self.keys_dir is not None else None

    @classmethod
    def of_home(cls, home: Home) -> AuditFiles:
        return cls(home.keys_dir, home.audit_anchor)

    @classmethod
    def of_database(cls, db_file: str | Path) -> AuditFiles:
        """The files of the twin home that holds this database file (`Home.state_db`)."""
        if str(db_file) in ("", ":memory:"):  # an in-memory database belongs to no home
            return cls(None, None)
        return cls.of_home(Home(Path(db_file).resolve().parent))


def entry_mac(key: bytes, key_id: str, entry_hash: str) -> str:
    """HMAC-SHA256 of an entry's hash; the key id is inside, so a MAC cannot move between keys."""
    h = _keyed(key).copy()  # the key's HMAC state, set up once per key, not once per entry
    h.update(f"{key_id}:{entry_hash}".encode())
    return h.hexdigest()


_keyed_states: dict[bytes, hmac.HMAC] = {}


def _keyed(key: bytes) -> hmac.HMAC:
    state = _keyed_states.get(key)
    if state is None:
        state = _keyed_states[key] = hmac.new(key, digestmod=hashlib.sha256)
    return state


def key_fingerprint(key: bytes) -> str:
    """A public name of a key's content (recorded at rotation; reveals nothing of the key)."""
    return hashlib.sha256(b"twin-audit-key:" + key).hexdigest()


class Keyring:
    """The audit keys in one folder, `audit-k<N>.key`, each 32 random bytes as hex, mode 0600."""

    _cache: dict[tuple[str, str], bytes] = {}
    _cache_lock = threading.Lock()

    def __init__(self, folder: Path, *, cached: bool = True) -> None:
        self.folder = folder
        self._folder = str(folder)
        # Appends share keys across the process; a verifier reads them afresh, once each.
        self._keys = Keyring._cache if cached else {}

    def path(self, key_id: str) -> Path:
        return self.folder / f"audit-{key_id}.key"

    def ids(self) -> list[str]:
        """Key ids present, oldest first."""
        if not self.folder.is_dir():
            return []
        found = (_KEY_NAME.match(p.name) for p in self.folder.iterdir())
        return [f"k{n}" for n in sorted(int(m.group(1)) for m in found if m)]

    def get(self, key_id: str) -> bytes:
        """A key's bytes; AuditKeyError names the file when it is missing or damaged."""
        known = self._keys.get((self._folder, key_id))
        if known is not None:  # every append asks: no path arithmetic on this path
            return known
        path = self.path(key_id)
        try:
            key = bytes.fromhex(read_private(path).decode("ascii").strip())
        except FileNotFoundError:
            raise AuditKeyError(f"audit key {key_id} is missing: {path}") from None
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise AuditKeyError(f"audit key {key_id} cannot be read: {path}: {exc}") from None
        if len(key) < 32:
            raise AuditKeyError(f"audit key {key_id} is too short ({len(key)} bytes): {path}")
        with Keyring._cache_lock:
            self._keys[(self._folder, key_id)] = key
        return key

    def current_or_create(self) -> str:
        """The newest key, made (k1) when the ring is empty."""
        ids = self.ids()
        return ids[-1] if ids else self.create_next()

    def create_next(self) -> str:
        """A new key numbered after the newest; created 0600 in one step."""
        while True:
            ids = self.ids()
            key_id = f"k{int(ids[-1][1:]) + 1 if ids else 1}"
            if write_private(self.path(key_id), (secrets.token_hex(32) + "\n").encode()):
                log.info("created audit key %s", self.path(key_id))
                return key_id
            # Another process took that number first: its key stands, take the next one.


# ---- the anchor ------------------------------------------------------------------------


def read_anchor(path: Path) -> Iterator[tuple[int, int, str]]:
    """(line number, seq, hash) of each line; ValueError names a malformed line."""
    with path.open("r", encoding="ascii", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
                raise ValueError(f"{path}: line {number} is not 'seq hash': {line.strip()[:80]!r}")
            yield number, int(parts[0]), parts[1]


class _AnchorWriter:
    """Appends lines with one write(2) each to an O_APPEND descriptor kept open per file.

    The descriptor is reopened when the file it points to has lost its last name (deleted, or
    replaced by a rename), so lines do not keep going to a file nobody will read. That check
    (an fstat of the open descriptor) runs at most every `recheck_s` seconds, not per line:
    a line costs one system call.
    """

    recheck_s = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[int, float]] = {}

    def write(self, path: Path, data: bytes) -> None:
        with self._lock:
            fd, checked = self._open.get(path, (-1, 0.0))
            now = time.monotonic()
            if fd < 0 or now - checked > self.recheck_s:
                fd = self._fd(path, fd)
                self._open[path] = (fd, now)
            os.write(fd, data)

    def _fd(self, path: Path, fd: int) -> int:
        if fd >= 0:
            if os.fstat(fd).st_nlink > 0:
                return fd
            os.close(fd)
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


_writer = _AnchorWriter()


class _Transaction(Protocol):
    def after_commit(self, fn: Callable[[], None], key: object = None) -> None: ...


def anchor_line(db: _Transaction, anchor: Path, seq: int, entry_hash: str) -> None:
    """Append `seq hash` to the anchor once the transaction holding the entry commits.

    One line per transaction: a later entry of the same transaction replaces the pending line
    (its hash chains the ones before it). Nothing is written if the transaction rolls back.
    """
    data = f"{seq} {entry_hash}\n".encode("ascii")

    def write() -> None:
        try:
            _writer.write(anchor, data)
        except OSError as exc:
            # The entry is committed; a missing anchor line weakens the check, never the plant.
            log.error("audit anchor %s not written: %s", anchor, exc)

    db.after_commit(write, key=("anchor", anchor))
