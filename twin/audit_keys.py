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
line for an entry that was rolled back would later look like a deleted entry. `sqlite3` has no
commit hook, so `watch` follows the connection's statements with its trace callback and writes
the queued lines on COMMIT (dropping them on ROLLBACK); the state store needs no change.
No SQL lives here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

    @classmethod
    def of_home(cls, home: Home) -> AuditFiles:
        return cls(home.keys_dir, home.audit_anchor)

    @classmethod
    def of_database(cls, db_file: str | Path) -> AuditFiles:
        """The files of the twin home that holds this database file (`Home.state_db`)."""
        if not str(db_file):  # an in-memory database belongs to no home
            return cls(None, None)
        return cls.of_home(Home(Path(db_file).resolve().parent))

    @classmethod
    def of_connection(cls, c: sqlite3.Connection) -> AuditFiles:
        for _, name, file in c.execute("PRAGMA database_list").fetchall():
            if name == "main":
                return cls.of_database(file or "")
        return cls(None, None)


def entry_mac(key: bytes, key_id: str, entry_hash: str) -> str:
    """HMAC-SHA256 of an entry's hash; the key id is inside, so a MAC cannot move between keys."""
    return hmac.new(key, f"{key_id}:{entry_hash}".encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A public name of a key's content (recorded at rotation; reveals nothing of the key)."""
    return hashlib.sha256(b"twin-audit-key:" + key).hexdigest()


class Keyring:
    """The audit keys in one folder, `audit-k<N>.key`, each 32 random bytes as hex, mode 0600."""

    _cache: dict[Path, bytes] = {}
    _cache_lock = threading.Lock()

    def __init__(self, folder: Path, *, cached: bool = True) -> None:
        self.folder = folder
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
        path = self.path(key_id)
        if path in self._keys:
            return self._keys[path]
        try:
            key = bytes.fromhex(read_private(path).decode("ascii").strip())
        except FileNotFoundError:
            raise AuditKeyError(f"audit key {key_id} is missing: {path}") from None
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise AuditKeyError(f"audit key {key_id} cannot be read: {path}: {exc}") from None
        if len(key) < 32:
            raise AuditKeyError(f"audit key {key_id} is too short ({len(key)} bytes): {path}")
        with Keyring._cache_lock:
            self._keys[path] = key
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

    The descriptor is reopened when the file at the path is no longer the one it points to
    (deleted, replaced), so lines never go to a file nobody will read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[int, int, int]] = {}

    def write(self, path: Path, data: bytes) -> None:
        with self._lock:
            fd = self._fd(path)
            os.write(fd, data)

    def _fd(self, path: Path) -> int:
        known = self._open.get(path)
        try:
            st = os.stat(path)
            if known is not None and (st.st_dev, st.st_ino) == known[1:]:
                return known[0]
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        if known is not None:
            os.close(known[0])
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        self._open[path] = (fd, st.st_dev, st.st_ino)
        return fd


_writer = _AnchorWriter()


class _CommitWatch:
    """Anchor lines queued on one connection, written at its COMMIT, dropped at its ROLLBACK."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, bytes]] = []
        self.statements = 0

    def __call__(self, statement: str) -> None:
        self.statements += 1
        if not self.pending:
            return
        head = statement.lstrip()[:12].upper()
        if head.startswith(("COMMIT", "END")):
            self.flush()
        elif head.startswith("ROLLBACK"):
            # ROLLBACK TO a savepoint may keep some entries; anchoring fewer is safe, more is not.
            self.pending.clear()

    def flush(self) -> None:
        # One line per transaction: its last entry is the head, and its hash chains the others.
        heads = {path: data for path, data in self.pending}
        self.pending = []
        for path, data in heads.items():
            try:
                _writer.write(path, data)
            except OSError as exc:
                # The entry is committed; a missing anchor line weakens the check, never the plant.
                log.error("audit anchor %s not written: %s", path, exc)


_watches: dict[int, _CommitWatch] = {}
_watches_lock = threading.Lock()


def commit_watch(c: sqlite3.Connection) -> _CommitWatch:
    """The watch of `c`, installed on first use; call before the append's first statement."""
    with _watches_lock:
        watch = _watches.get(id(c))
        if watch is None:
            watch = _watches[id(c)] = _CommitWatch()
            c.set_trace_callback(watch)
        return watch


def anchor_on_commit(
    c: sqlite3.Connection, watch: _CommitWatch, seen: int, anchor: Path, seq: int, entry_hash: str
) -> None:
    """Queue `seq hash` for the anchor; written when `c` commits (at once in autocommit).

    `seen` is `watch.statements` before the append ran its statements: if the count did not
    move, the watch belongs to a closed connection whose id `c` now reuses, so it is installed.
    """
    if watch.statements == seen:
        c.set_trace_callback(watch)
    watch.pending.append((anchor, f"{seq} {entry_hash}\n".encode("ascii")))
    if not c.in_transaction:
        watch.flush()
