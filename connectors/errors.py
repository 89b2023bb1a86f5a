"""Connector errors that the user can act on, beside the generic ones in `twin.errors`.

A wrong node id, register or credential is the user's to fix, so these are also `BadInput`
(the CLI exits with code 2); lost connections and refused writes stay plain `ConnectorError`s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.errors import BadInput, ConnectorError, WriteRejected

if TYPE_CHECKING:
    from connectors.base import WriteResult


class TagConfigError(ConnectorError, BadInput):
    """A tag's node id or register does not exist on the plant, or has the wrong type."""

    def __init__(self, tag: str, reason: str) -> None:
        self.tag = tag
        self.reason = reason
        super().__init__(f"tag {tag!r}: {reason}")


class AccessDenied(ConnectorError, BadInput):
    """The plant refused our security settings or credentials."""


class ReadBackMismatch(WriteRejected):
    """The value read back after a write differs from what was written (safety rule 3)."""

    def __init__(self, result: WriteResult) -> None:
        self.result = result
        super().__init__(
            f"tag {result.tag!r}: wrote {result.written!r} but read back {result.read_back!r}"
            f" (requested {result.requested!r})"
        )
