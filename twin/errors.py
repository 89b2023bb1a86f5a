"""Exceptions that cross package boundaries.

`BadInput` and its subclasses are the user's to fix (the CLI exits with code 2 and prints the
message, which names the file, key, row, column or tag and the reason); everything else is
a failure of ours or of the plant (exit code 1).
"""

from __future__ import annotations

from pathlib import Path


class TwinError(Exception):
    """Base of every error this project raises on purpose."""


class BadInput(TwinError):
    """Input the user can fix: a spec, a file, a CLI argument. CLI exit code 2."""


class SpecError(BadInput):
    """A plant spec that cannot be used; names the file, the key and the reason."""

    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason
        super().__init__(f"{self.file}: {key}: {reason}")


class ImportFileError(BadInput):
    """An import file with a problem; names the file, row and column."""

    def __init__(
        self, file: Path | str, reason: str, row: int | None = None, column: str | None = None
    ) -> None:
        self.file = str(file)
        self.row = row
        self.column = column
        self.reason = reason
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        loc = (" " + ", ".join(where)) if where else ""
        super().__init__(f"{self.file}{loc}: {reason}")


class HistorianError(TwinError):
    """The historian could not store or read data."""


class ConnectorError(TwinError):
    """A plant connection problem; carries the protocol's reason."""


class ConnectionLost(ConnectorError):
    """The connection to the plant dropped or could not be made."""


class WriteRejected(ConnectorError):
    """The plant refused a write, or the read-back did not match."""


class BadQuality(ConnectorError):
    """A value arrived with bad quality or out of range."""
