"""Short-lived signed tokens (HMAC-SHA256) under a secret kept in the ledger.

The secret exists for nothing else: 256 random bits, made by whichever process first needs
it (`INSERT … ON CONFLICT DO NOTHING`, so concurrent processes agree on one), never derived
from settings (database and Redis URLs are no secret in a docker-compose file). Each
purpose signs with a key of its own derived from it, so a token made for one use is
worthless for another. `conveyor secrets rotate` makes a new secret and keeps the previous
one for verification: tokens already given out stay valid until they expire, and every
process signs with the new secret within `REFRESH_SECONDS`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

import asyncpg

from service.databases.database import Database
from service.errors import DependencyUnavailable

SIGNING_SECRET = "signing"  # the row of `service_secrets` tokens are signed under
REFRESH_SECONDS = 5.0


class InvalidToken(Exception):
    """A token that is malformed, forged, for something else, or expired."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def load_secrets(conn: asyncpg.Connection, name: str = SIGNING_SECRET) -> list[bytes]:
    """The secret `name`, then the previous one if it was rotated; made on first use."""
    query = "SELECT current, previous FROM service_secrets WHERE name = $1"
    row = await conn.fetchrow(query, name)
    if row is None:
        await conn.execute(
            "INSERT INTO service_secrets (name, current) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            name,
            secrets.token_bytes(32),
        )
        row = await conn.fetchrow(query, name)
        assert row is not None  # inserted above, or by whoever won the race
    return [row["current"]] + ([row["previous"]] if row["previous"] else [])


async def rotate_secret(conn: asyncpg.Connection, name: str = SIGNING_SECRET) -> None:
    """A new secret `name`; the one it replaces stays valid for verification until the next rotation."""
    await load_secrets(conn, name)
    await conn.execute(
        "UPDATE service_secrets SET previous = current, current = $2, rotated_at = now() WHERE name = $1",
        name,
        secrets.token_bytes(32),
    )


class Signer:
    """Signs a few text fields with an expiry under the first key; `verify`, under any of
    them, gives the fields back."""

    MAX_TOKEN_CHARS = 1024

    def __init__(self, keys: Sequence[bytes]) -> None:
        self.keys = list(keys)

    def sign(self, *fields: str, ttl: float) -> tuple[str, int]:
        expires = int(time.time() + ttl)
        payload = "\n".join([*fields, str(expires)]).encode()
        signature = hmac.new(self.keys[0], payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(signature)}", expires

    def verify(self, token: str) -> list[str]:
        try:
            if len(token) > self.MAX_TOKEN_CHARS:
                raise ValueError("too long")
            encoded, _, encoded_signature = token.partition(".")
            payload, signature = _unb64(encoded), _unb64(encoded_signature)
        except ValueError:
            raise InvalidToken("token-malformed", "the token is not one this service gave out") from None
        expected = (hmac.new(key, payload, hashlib.sha256).digest() for key in self.keys)
        if not any(hmac.compare_digest(signature, candidate) for candidate in expected):
            raise InvalidToken("token-invalid", "the token's signature does not match")
        *fields, expires = payload.decode().split("\n")
        if int(expires) < time.time():
            raise InvalidToken("token-expired", "the token has expired; ask for a new one")
        return fields


class SigningKeys:
    """One per API process (`app.state.signing_keys`): the ledger's secret, read again
    every `REFRESH_SECONDS` so a rotation reaches every process."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._secrets: list[bytes] = []
        self._loaded_at = float("-inf")

    async def signer(self, purpose: str) -> Signer:
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            try:
                async with self.db.transaction() as conn:
                    self._secrets = await load_secrets(conn)
                self._loaded_at = time.monotonic()
            except DependencyUnavailable:
                if not self._secrets:
                    raise  # signing and checking what was signed go on with the secrets last read
        label = f"conveyor:{purpose}".encode()
        return Signer([hmac.new(secret, label, hashlib.sha256).digest() for secret in self._secrets])
