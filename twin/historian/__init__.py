"""Embedded time-series historian: Parquet segments per plant and UTC day (docs/historian.md)."""

from twin.historian.config import HistorianConfig
from twin.historian.historian import Historian

__all__ = ["Historian", "HistorianConfig"]
