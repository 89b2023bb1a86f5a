"""The roles of the control room and the API, ordered: viewer < operator (approve/reject) <
engineer (also operator limits, step tests, model promotion) < admin (users)."""

from __future__ import annotations

from enum import IntEnum

from twin.errors import BadInput


class Role(IntEnum):
    VIEWER = 0
    OPERATOR = 1
    ENGINEER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        if isinstance(text, Role):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise BadInput(f"role {text!r} is not one of {names}") from None

    def __str__(self) -> str:
        return self.name.lower()
