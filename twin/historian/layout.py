"""Where a plant's historian keeps its files, and how each file is replaced atomically.

```
<plant folder>/
  writer.lock                 advisory fcntl lock, taken by the writer only
  tags.json                   tag name -> dense integer id (the id column is what reads filter on)
  latest.json                 newest sample per tag, rewritten after every flush
  annotations/ann-*.json      one file per annotation ("campaign", "gap", ...)
  date=YYYY-MM-DD/            one folder per UTC day (a Hive partition; docs/historian.md)
    _manifest.json            the live segments of the day: the only list readers trust
    seg-<lo>-<hi>.parquet     segments; lo..hi is the range of write sequence numbers merged in it
```

The plant folder itself is `historian/plant=<name>` (twin.paths.Home), so any engine reads the
history with Hive partitioning. Folders written before that layout (`days/YYYY-MM-DD/` with
`manifest.json`) are still read and written in place.

Every file is written to a temporary name, fsynced, then renamed over its final name, and
the folder is fsynced: a reader or a crash sees either the old file or the new one, never a
torn one. Segments become visible only when the day's manifest names them, so a reader's
view of a day is one atomic snapshot.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

US_PER_DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEGMENT_NAME = re.compile(r"^seg-(\d{12})-(\d{12})\.parquet$")
TMP_PREFIX = ".tmp-"
SCHEMA_VERSION = 2
"""Version of the on-disk format (1: days/ folders; 2: Hive date= folders, _manifest.json)."""
MANIFEST = "_manifest.json"  # "_": Spark, Trino and Hive skip it when listing a partition
LEGACY_MANIFEST = "manifest.json"
LEGACY_DAYS = "days"
DATE_KEY = "date="


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(folder: Path, suffix: str) -> Path:
    return folder / f"{TMP_PREFIX}{uuid.uuid4().hex}{suffix}"


def publish(tmp: Path, final: Path) -> None:
    """fsync a finished temporary file, rename it into place and make the rename durable."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent, ".json")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> Any | None:
    """The file's content, or None when it does not exist yet."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact integer arithmetic)."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts} has no timezone")
    return (ts - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def day_of_us(us: int) -> int:
    """UTC day number (days since 1970-01-01) of a timestamp in microseconds."""
    return us // US_PER_DAY


def day_name(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def day_from_name(name: str) -> int | None:
    try:
        return (date.fromisoformat(name) - date(1970, 1, 1)).days
    except ValueError:
        return None


def segment_name(lo: int, hi: int) -> str:
    return f"seg-{lo:012d}-{hi:012d}.parquet"


@dataclass(frozen=True)
class Segment:
    """One live segment file of a day, as the manifest lists it."""

    name: str
    lo: int
    """Lowest write sequence number merged into the file."""
    hi: int
    """Highest write sequence number: on duplicate (tag, ts) the segment with the higher hi wins."""
    rows: int
    min_us: int
    max_us: int
    all_good: bool = False
    """Every row GOOD (hence finite): a good-only read of the file needs no quality mask."""

    def overlaps(self, other: Segment) -> bool:
        return self.min_us <= other.max_us and other.min_us <= self.max_us


class Layout:
    """Paths of one plant's historian folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def lock_file(self) -> Path:
        return self.root / "writer.lock"

    @property
    def tags_file(self) -> Path:
        return self.root / "tags.json"

    @property
    def latest_file(self) -> Path:
        return self.root / "latest.json"

    @property
    def annotations_dir(self) -> Path:
        return self.root / "annotations"

    @property
    def days_dir(self) -> Path:
        """Where version-1 folders kept their days (new days go to `date=` folders in root)."""
        return self.root / LEGACY_DAYS

    def day_dir(self, day: int) -> Path:
        legacy = self.days_dir / day_name(day)
        return legacy if legacy.is_dir() else self.root / f"{DATE_KEY}{day_name(day)}"

    def days(self) -> list[int]:
        """Days that have a folder (either layout), ascending."""
        found: set[int] = set()
        for folder, prefix in ((self.root, DATE_KEY), (self.days_dir, "")):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for n in names:
                if n.startswith(prefix) and (d := day_from_name(n[len(prefix) :])) is not None:
                    found.add(d)
        return sorted(found)

    # ---- manifests ------------------------------------------------------------------

    def read_manifest(self, day: int) -> list[Segment]:
        folder = self.day_dir(day)
        raw = read_json(folder / MANIFEST) or read_json(folder / LEGACY_MANIFEST)
        if raw is None:
            return []
        return [Segment(**s) for s in raw["segments"]]

    def write_manifest(self, day: int, segments: list[Segment]) -> None:
        ordered = sorted(segments, key=lambda s: s.lo)
        folder = self.day_dir(day)
        write_json_atomic(
            folder / MANIFEST,
            {"version": SCHEMA_VERSION, "segments": [asdict(s) for s in ordered]},
        )
        (folder / LEGACY_MANIFEST).unlink(missing_ok=True)  # the new name is read first

    # ---- tag ids --------------------------------------------------------------------

    def read_tag_ids(self) -> dict[str, int]:
        raw = read_json(self.tags_file)
        return dict(raw["tags"]) if raw else {}

    def write_tag_ids(self, ids: dict[str, int]) -> None:
        write_json_atomic(self.tags_file, {"version": 1, "tags": ids})
