"""Embedded time-series historian: Parquet segments per plant and UTC day, read through DuckDB."""

from twin.historian.config import HistorianConfig
from twin.historian.historian import Historian

__all__ = ["Historian", "HistorianConfig"]
