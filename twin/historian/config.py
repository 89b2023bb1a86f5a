"""Settings of the embedded historian."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistorianConfig:
    """How the historian buffers, writes and compacts; defaults suit 1 s sampling of ~100 tags."""

    flush_interval_s: float = 1.0
    """A background thread writes the append buffer at least this often (a SIGKILL loses at most this much)."""
    row_group_rows: int = 131_072
    """Rows per Parquet row group: DuckDB skips whole groups by tag id and time statistics."""
    compression: str = "snappy"
    """Parquet codec of every column but ts (delta-encoded instead); snappy decodes fast."""
    merge_segments: int = 16
    """Merge a day's newest small segments once this many have accumulated."""
    small_segment_rows: int = 250_000
    """Segments below this many rows count as small and take part in tail merges."""
    compact_closed_days: bool = True
    """Merge every earlier day into one file (in a background thread) when data for a later day arrives."""
    read_retries: int = 5
    """A read that finds a segment removed by a concurrent compaction re-reads the manifest this often."""

    def __post_init__(self) -> None:
        if not self.flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be positive, got {self.flush_interval_s}")
        if self.row_group_rows < 1_000:
            raise ValueError(f"row_group_rows must be at least 1000, got {self.row_group_rows}")
        if self.merge_segments < 2:
            raise ValueError(f"merge_segments must be at least 2, got {self.merge_segments}")
        if self.read_retries < 1:
            raise ValueError(f"read_retries must be at least 1, got {self.read_retries}")
