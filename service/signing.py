"""Short-lived signed tokens (HMAC-SHA256) with a server secret derived from the settings.

Every API process derives the same key from the same settings, so a token one process
signs, any other verifies; nothing is stored. The key material is every secret setting
(`ADMIN_KEY`, provider keys, …) plus the database and Redis URLs (with their passwords),
separated per purpose so a token made for one use is worthless for another. Set
`ADMIN_KEY` in production: it is the one secret that exists only for the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from service.config import Settings
from service.logs import secret_values


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


def derive_key(settings: Settings, purpose: str) -> bytes:
    material = "\0".join([settings.database_url, settings.redis_url, *sorted(secret_values(settings))])
    return hmac.new(material.encode(), f"conveyor:{purpose}".encode(), hashlib.sha256).digest()


class Signer:
    """Signs a few text fields with an expiry; `verify` gives the fields back."""

    MAX_TOKEN_CHARS = 1024

    def __init__(self, key: bytes) -> None:
        self.key = key

    def sign(self, *fields: str, ttl: float) -> tuple[str, int]:
        expires = int(time.time() + ttl)
        payload = "\n".join([*fields, str(expires)]).encode()
        signature = hmac.new(self.key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(signature)}", expires

    def verify(self, token: str) -> list[str]:
        try:
            if len(token) > self.MAX_TOKEN_CHARS:
                raise ValueError("too long")
            encoded, _, signature = token.partition(".")
            payload, signature = _unb64(encoded), _unb64(signature)
        except ValueError:
            raise InvalidToken("token-malformed", "the token is not one this service gave out") from None
        expected = hmac.new(self.key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            raise InvalidToken("token-invalid", "the token's signature does not match")
        *fields, expires = payload.decode().split("\n")
        if int(expires) < time.time():
            raise InvalidToken("token-expired", "the token has expired; ask for a new one")
        return fields
