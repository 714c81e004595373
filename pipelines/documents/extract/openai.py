"""Extraction through any OpenAI-compatible chat completions API (OpenAI, vLLM, Ollama, llama.cpp).

`max_tokens` rather than `max_completion_tokens`: every compatible server takes it.
"""

from __future__ import annotations

from typing import Any

import httpx

from pipelines.documents.extract.llm import LLMExtractor, Reply, error_body
from pipelines.documents.extract.schema import INSTRUCTIONS, RESUME_JSON_SCHEMA
from service.errors import PermanentError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"


class OpenAIExtractor(LLMExtractor):
    provider = "openai"

    def __init__(
        self, *, api_key: str | None, base_url: str = DEFAULT_BASE_URL, model: str = DEFAULT_MODEL, **options: Any
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(base_url=base_url, model=model, headers=headers, **options)

    def request(self, text: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
        return "chat/completions", {
            "model": self.model,
            "messages": [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": text}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "resume_fields", "strict": True, "schema": RESUME_JSON_SCHEMA},
            },
            "max_tokens": max_tokens,
            "temperature": 0,
        }

    def reply(self, body: dict[str, Any]) -> Reply:
        choice = body["choices"][0]
        message = choice["message"]
        if message.get("refusal"):
            raise PermanentError(f"the model refused: {message['refusal']}", type="llm_refused")
        return Reply(message.get("content") or "", truncated=choice.get("finish_reason") == "length")

    def quota_exhausted(self, response: httpx.Response) -> bool:
        error = error_body(response)
        return "insufficient_quota" in (error.get("code"), error.get("type"))
