"""Users: the one owner of the users table (validation and hashing live in twin.users)."""

from __future__ import annotations

from twin.errors import BadInput
from twin.state.base import dt, iso, now_utc
from twin.state.core import StoreCore
from twin.state.records import UserRecord


class UserExists(BadInput):
    """A user with this name already exists."""


class UsersMixin(StoreCore):
    def get_user(self, name: str) -> UserRecord | None:
        rows = self.query("SELECT * FROM users WHERE name = ?", (name,))
        if not rows:
            return None
        r = rows[0]
        return UserRecord(
            name=r["name"],
            role=r["role"],
            password_hash=r["password_hash"],
            created_at=dt(r["created_at"]),
            created_by=r["created_by"],
            disabled=bool(r["disabled"]),
        )

    def list_users(self) -> list[UserRecord]:
        names = [r["name"] for r in self.query("SELECT name FROM users ORDER BY name")]
        return [u for n in names if (u := self.get_user(n)) is not None]

    def count_users(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM users")[0][0])

    def add_user(self, name: str, role: str, password_hash: str, *, actor: str) -> None:
        with self.write() as c:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserExists(f"user {name!r} already exists")
            c.execute(
                "INSERT INTO users (name, role, password_hash, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, role, password_hash, iso(now_utc()), actor),
            )
            self.audit(
                c,
                user=actor,
                kind="user_add",
                subject=f"user:{name}",
                what={"name": name, "role": role},
            )

    def set_user_role(self, name: str, role: str, *, actor: str, why: str = "") -> None:
        with self.write() as c:
            row = c.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise BadInput(f"no user named {name!r}")
            c.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
            self.audit(
                c,
                user=actor,
                kind="user_role",
                subject=f"user:{name}",
                what={"from": row[0], "to": role},
                why=why,
            )

    def set_user_password_hash(self, name: str, password_hash: str, *, actor: str) -> None:
        with self.write() as c:
            n = c.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            ).rowcount
            if n == 0:
                raise BadInput(f"no user named {name!r}")
            self.audit(c, user=actor, kind="user_password", subject=f"user:{name}", what={})

    def set_user_disabled(self, name: str, disabled: bool, *, actor: str, why: str = "") -> None:
        with self.write() as c:
            n = c.execute(
                "UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name)
            ).rowcount
            if n == 0:
                raise BadInput(f"no user named {name!r}")
            self.audit(
                c,
                user=actor,
                kind="user_disable" if disabled else "user_enable",
                subject=f"user:{name}",
                what={},
                why=why,
            )
