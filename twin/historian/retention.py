"""Retention: drop whole UTC days older than a cutoff (`twin historian vacuum`).

A day goes in two steps that a crash cannot tear: its folder is renamed to a hidden name
(atomic; from then on no reader lists it and no engine's glob of date=* matches it), then the
hidden folder is deleted. Vacuum takes the writer lock, so a plant being written to by a
runtime or an import is refused with the holder named: stop it, vacuum, start it again.
Readers are never blocked; a read that raced the rename simply re-reads without that day.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from twin.historian.layout import Layout, day_name, fsync_dir
from twin.historian.writer_lock import WriterLock

_EPOCH_DAY = date(1970, 1, 1)


@dataclass
class VacuumReport:
    """What a vacuum removed (or, dry, would remove)."""

    days: list[str] = field(default_factory=list)
    """The removed days, YYYY-MM-DD, oldest first."""
    segments: int = 0
    rows: int = 0
    bytes: int = 0


def vacuum(root: Path | str, before: date, dry_run: bool = False) -> VacuumReport:
    """Remove every day of the plant folder `root` earlier than `before` (UTC days)."""
    layout = Layout(Path(root))
    cutoff = (before - _EPOCH_DAY).days
    lock = WriterLock(layout.lock_file)
    lock.acquire()
    try:
        report = VacuumReport()
        for day in (d for d in layout.days() if d < cutoff):
            folder = layout.day_dir(day)
            segs = layout.read_manifest(day)
            report.days.append(day_name(day))
            report.segments += len(segs)
            report.rows += sum(s.rows for s in segs)
            report.bytes += sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
            if not dry_run:
                hidden = folder.parent / f".vacuum-{uuid.uuid4().hex}"
                folder.rename(hidden)
                fsync_dir(folder.parent)
                shutil.rmtree(hidden)
        return report
    finally:
        lock.release()
