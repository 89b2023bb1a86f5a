"""Log-in sessions and log-in attempts: the one owner of the sessions and login_attempts tables.

A session row is keyed by the SHA-256 of its token (twin.auth makes and checks tokens): a copy
of the database holds no usable token. Times are Unix seconds (wall clock); the rules that
read them (idle timeout, lifetime, throttling) live in twin.auth.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.state.core import StoreCore
from twin.state.schema import ENSURED

ENSURED.append(
    (
        """CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY,             -- sha256 hex of the session token
            user TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_seen REAL NOT NULL,
            expires_at REAL NOT NULL,        -- absolute end of the session
            auth_at REAL NOT NULL,           -- last time the password was entered
            source TEXT,
            revoked_at REAL,
            revoked_why TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user)",
        """CREATE TABLE IF NOT EXISTS login_attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            source TEXT,
            at REAL NOT NULL,
            ok INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS login_attempts_name ON login_attempts(name, at)",
        "CREATE INDEX IF NOT EXISTS login_attempts_source ON login_attempts(source, at)",
    )
)


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user: str
    created_at: float
    last_seen: float
    expires_at: float
    auth_at: float
    source: str | None
    revoked_at: float | None
    revoked_why: str | None


@dataclass(frozen=True)
class Failures:
    """Failed log-ins counted for throttling: how many, and the newest one's time."""

    count: int
    newest: float | None


class SessionsMixin(StoreCore):
    def add_session(
        self,
        sid: str,
        user: str,
        *,
        now: float,
        expires_at: float,
        source: str | None,
        auth_at: float | None = None,
        provider: str | None = None,
    ) -> None:
        """A new session after a good password, or a provider log-in (`provider`, its issuer;
        `auth_at` when the user authenticated there); audited with the log-in it records."""
        what: dict[str, object] = {"session": sid[:12], "source": source}
        if provider is not None:
            what["provider"] = provider
        with self.write() as c:
            c.execute(
                "INSERT INTO sessions (id, user, created_at, last_seen, expires_at, auth_at, "
                "source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, user, now, now, expires_at, now if auth_at is None else auth_at, source),
            )
            c.execute(
                "INSERT INTO login_attempts (name, source, at, ok) VALUES (?, ?, ?, 1)",
                (user, source, now),
            )
            self.audit(c, user=user, kind="login", subject=f"user:{user}", what=what)

    def get_session(self, sid: str) -> SessionRecord | None:
        rows = self.query("SELECT * FROM sessions WHERE id = ?", (sid,))
        return SessionRecord(**dict(rows[0])) if rows else None

    def touch_session(self, sid: str, now: float) -> None:
        with self.write() as c:
            c.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, sid))

    def reauth_session(
        self,
        sid: str,
        user: str,
        now: float,
        *,
        auth_at: float | None = None,
        provider: str | None = None,
    ) -> None:
        """The password entered again in a live session, or a fresh log-in at the identity
        provider (`provider`, `auth_at` its `auth_time`): what an approval that writes needs."""
        what: dict[str, object] = {"session": sid[:12]}
        if provider is not None:
            what["provider"] = provider
        with self.write() as c:
            c.execute(
                "UPDATE sessions SET auth_at = ?, last_seen = ? WHERE id = ?",
                (now if auth_at is None else auth_at, now, sid),
            )
            self.audit(c, user=user, kind="reauth", subject=f"user:{user}", what=what)

    def revoke_session(self, sid: str, *, actor: str, why: str, now: float) -> bool:
        with self.write() as c:
            row = c.execute(
                "SELECT user FROM sessions WHERE id = ? AND revoked_at IS NULL", (sid,)
            ).fetchone()
            if row is None:
                return False
            c.execute(
                "UPDATE sessions SET revoked_at = ?, revoked_why = ? WHERE id = ?", (now, why, sid)
            )
            self.audit(
                c,
                user=actor,
                kind="logout",
                subject=f"user:{row['user']}",
                what={"session": sid[:12]},
                why=why,
            )
            return True

    def revoke_user_sessions(self, user: str, *, actor: str, why: str, now: float) -> int:
        """End every live session of a user (log-out everywhere, a disabled user); audited."""
        with self.write() as c:
            n = c.execute(
                "UPDATE sessions SET revoked_at = ?, revoked_why = ? "
                "WHERE user = ? AND revoked_at IS NULL",
                (now, why, user),
            ).rowcount
            self.audit(
                c,
                user=actor,
                kind="logout_everywhere",
                subject=f"user:{user}",
                what={"sessions": n},
                why=why,
            )
            return int(n)

    def live_sessions(self, user: str, now: float) -> list[SessionRecord]:
        rows = self.query(
            "SELECT * FROM sessions WHERE user = ? AND revoked_at IS NULL AND expires_at > ? "
            "ORDER BY created_at",
            (user, now),
        )
        return [SessionRecord(**dict(r)) for r in rows]

    # ---- log-in attempts ---------------------------------------------------------------

    def record_failed_login(self, name: str, source: str | None, now: float) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO login_attempts (name, source, at, ok) VALUES (?, ?, ?, 0)",
                (name, source, now),
            )

    def failed_logins(
        self, *, since: float, name: str | None = None, source: str | None = None
    ) -> Failures:
        """Failures of a name (after its last good log-in) or of a source, since `since`."""
        if name is not None:
            last_ok = self.query(
                "SELECT MAX(at) FROM login_attempts WHERE name = ? AND ok = 1", (name,)
            )[0][0]
            since = max(since, float(last_ok)) if last_ok is not None else since
            where, arg = "name = ?", name
        else:
            where, arg = "source = ?", str(source)
        row = self.query(
            f"SELECT COUNT(*), MAX(at) FROM login_attempts WHERE {where} AND ok = 0 AND at > ?",
            (arg, since),
        )[0]
        return Failures(int(row[0]), None if row[1] is None else float(row[1]))
