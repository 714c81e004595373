"""Dashboard sessions, recorded in the ledger so they can be ended from anywhere.

A session is a random token (the browser's cookie), stored only as its hash, with the
hash of the admin key it was opened with (changing `ADMIN_KEY` ends every session) and
an expiry. Ending one deletes its row; `end_all` is "log out everywhere".
"""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

SESSION_SECONDS = 12 * 3600


def _hash(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def start(conn: asyncpg.Connection, admin_key: str) -> str:
    """A new session's token; expired sessions are forgotten on the way."""
    token = secrets.token_urlsafe(32)
    await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO dashboard_sessions (token_hash, admin_key_hash, expires_at)"
        " VALUES ($1, $2, now() + make_interval(secs => $3))",
        _hash(token),
        _hash(admin_key),
        float(SESSION_SECONDS),
    )
    return token


async def is_open(conn: asyncpg.Connection, token: str, admin_key: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT FROM dashboard_sessions"
        " WHERE token_hash = $1 AND admin_key_hash = $2 AND expires_at > now())",
        _hash(token),
        _hash(admin_key),
    )


async def end(conn: asyncpg.Connection, token: str) -> None:
    await conn.execute("DELETE FROM dashboard_sessions WHERE token_hash = $1", _hash(token))


async def end_all(conn: asyncpg.Connection) -> int:
    """Log out everywhere: the number of sessions ended."""
    return int((await conn.execute("DELETE FROM dashboard_sessions")).split()[-1])
