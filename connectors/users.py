"""User names and passwords a served plant accepts (OPC-UA UserName tokens).

Entries come from a users file (`name:secret` per line, `#` comments; a secret starting with
`$argon2` is an argon2 hash, anything else a plain password) and/or from the environment
variables the plant spec names (`username_env` / `password_env`). Secrets never live in the spec.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from twin.errors import BadInput
from twin.spec import PlantSpec

_hasher = PasswordHasher()


class UserTable:
    """name -> secret (plain or argon2 hash); empty means anonymous access."""

    def __init__(self, entries: dict[str, str] | None = None) -> None:
        self._entries = dict(entries or {})

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, name: str, secret: str) -> None:
        self._entries[name] = secret

    def check(self, name: str, password: str) -> bool:
        secret = self._entries.get(name)
        if secret is None:
            return False
        if secret.startswith("$argon2"):
            try:
                return _hasher.verify(secret, password)
            except (VerificationError, InvalidHashError):
                return False
        return hmac.compare_digest(secret.encode(), password.encode())

    @classmethod
    def from_file(cls, path: Path) -> UserTable:
        table = cls()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BadInput(f"{path}: cannot read users file: {exc.strerror}") from exc
        for i, line in enumerate(lines, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, secret = line.partition(":")
            if not sep or not name.strip() or not secret:
                raise BadInput(f"{path}: line {i}: expected name:password or name:$argon2... hash")
            table.add(name.strip(), secret)
        return table

    @classmethod
    def from_env(cls, spec: PlantSpec) -> UserTable:
        """The one user named by the spec's username_env/password_env, when both are set."""
        table = cls()
        src = spec.source.opcua
        if src is None or not src.username_env or not src.password_env:
            return table
        name, password = os.environ.get(src.username_env), os.environ.get(src.password_env)
        if name and password:
            table.add(name, password)
        return table


def hash_password(password: str) -> str:
    """An argon2 hash for a users file."""
    return _hasher.hash(password)
