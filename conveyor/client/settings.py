"""What both clients are built from: the API's URL and key (from the arguments, else
CONVEYOR_URL and CONVEYOR_API_KEY), timeouts, and how long 429/503 may be waited out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"  # where `conveyor up` listens
CONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str
    timeout: float
    max_retry_wait: float

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None, timeout: float, max_retry_wait: float) -> Settings:
        key = api_key or os.environ.get("CONVEYOR_API_KEY")
        if not key:
            raise ValueError("no API key: pass api_key= or set CONVEYOR_API_KEY")
        return cls((url or os.environ.get("CONVEYOR_URL") or DEFAULT_URL).rstrip("/"), key, timeout, max_retry_wait)

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments for httpx.Client and httpx.AsyncClient."""
        return {
            "base_url": self.url,
            "headers": {"Authorization": f"Bearer {self.api_key}"},
            "timeout": httpx.Timeout(self.timeout, connect=CONNECT_SECONDS),
        }

    def stream_timeout(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=CONNECT_SECONDS, read=read)
