"""Extraction through Google's Gemini API (`generateContent` with a response schema)."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from pipelines.documents.extract.llm import LLMExtractor, Reply, error_body
from pipelines.documents.extract.schema import GEMINI_RESPONSE_SCHEMA, INSTRUCTIONS
from service.errors import PermanentError

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
DEFAULT_MODEL = "gemini-2.5-flash"
REFUSALS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE"}


class GeminiExtractor(LLMExtractor):
    provider = "gemini"

    def __init__(
        self, *, api_key: str | None, base_url: str = DEFAULT_BASE_URL, model: str = DEFAULT_MODEL, **options: Any
    ):
        headers = {"x-goog-api-key": api_key} if api_key else {}
        super().__init__(base_url=base_url, model=model.removeprefix("models/"), headers=headers, **options)

    def request(self, text: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
        return f"models/{self.model}:generateContent", {
            "systemInstruction": {"parts": [{"text": INSTRUCTIONS}]},
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": GEMINI_RESPONSE_SCHEMA,
                "maxOutputTokens": max_tokens,
                "temperature": 0,
            },
        }

    def reply(self, body: dict[str, Any]) -> Reply:
        blocked = body.get("promptFeedback", {}).get("blockReason")
        if blocked and not body.get("candidates"):
            raise PermanentError(f"the prompt was blocked: {blocked}", type="llm_refused")
        candidate = body["candidates"][0]
        reason = candidate.get("finishReason")
        if reason in REFUSALS:
            raise PermanentError(f"the model stopped: {reason}", type="llm_refused")
        text = "".join(part.get("text", "") for part in candidate.get("content", {}).get("parts", []))
        return Reply(text, truncated=reason == "MAX_TOKENS")

    def quota_exhausted(self, response: httpx.Response) -> bool:
        """Per-minute limits clear by waiting; a per-day quota (or none at all) does not."""
        for detail in error_body(response).get("details", []):
            for violation in detail.get("violations", []):
                quota = violation.get("quotaId", "")
                if "PerDay" in quota or violation.get("quotaValue") == "0":
                    return True
        return False

    def retry_after(self, response: httpx.Response) -> float | None:
        """Gemini puts its hint in the body (`RetryInfo.retryDelay`, e.g. "21s")."""
        for detail in error_body(response).get("details", []):
            if detail.get("@type", "").endswith("google.rpc.RetryInfo"):
                with contextlib.suppress(ValueError):
                    return float(str(detail.get("retryDelay", "")).removesuffix("s"))
        return super().retry_after(response)
