"""Local OpenAI-compatible and Gemini servers that give real answers and fail on demand.

Answers are correct: the fields come from the rule-based extractor run on the prompt's
text. A reply longer than the request's token limit (≈4 characters a token) is cut off
the way the providers do it. Tests queue `Fault`s; each call takes the next one, whichever
API it hits. `calls` and `requests` record what arrived.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipelines.documents.extract.rules import extract_fields

from .served_app import Served, ServedApp

API_KEY = "test-llm-key"
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Fault:
    kind: Literal["rate_limited", "quota", "server_error", "invalid_json", "slow"]
    retry_after: str | None = None
    """`Retry-After` header (OpenAI) or `RetryInfo.retryDelay` seconds (Gemini)."""
    retry_after_ms: str | None = None
    status: int = 500
    seconds: float = 0.0
    """How long a `slow` answer takes."""


class LLMServers(Served):
    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[dict[str, Any]] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()
        self.served = ServedApp(
            Starlette(
                routes=[
                    Route("/v1/chat/completions", self._openai, methods=["POST"]),
                    Route("/v1beta/models/{model}:generateContent", self._gemini, methods=["POST"]),
                ]
            )
        )

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def gemini_base_url(self) -> str:
        return f"{self.url}/v1beta"

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()
            self.requests.clear()

    async def _arrive(self, api: str, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            self.calls[api] += 1
            self.requests.append(body)
            fault = self._faults.popleft() if self._faults else None
        await asyncio.sleep(fault.seconds if fault and fault.kind == "slow" else self.latency)
        return fault

    # -- OpenAI ------------------------------------------------------------------------------

    async def _openai(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _openai_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        body = await request.json()
        response_format = body.get("response_format", {})
        schema = response_format.get("json_schema", {}).get("schema", {})
        if response_format.get("type") != "json_schema" or not _strict(schema):
            return _openai_error(400, "Invalid schema for response_format.", "invalid_request_error", None)
        fault = await self._arrive("openai", body)
        if fault and fault.kind == "rate_limited":
            headers = {
                k: v for k, v in (("retry-after", fault.retry_after), ("retry-after-ms", fault.retry_after_ms)) if v
            }
            return _openai_error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", headers)
        if fault and fault.kind == "quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            return _openai_error(429, message, "insufficient_quota", "insufficient_quota")
        if fault and fault.kind == "server_error":
            return _openai_error(
                fault.status, "The server had an error while processing your request.", "server_error", None
            )
        text = body["messages"][-1]["content"]
        content, finish = _answer(text, body.get("max_tokens"), fault)
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "finish_reason": "length" if finish == "truncated" else "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": len(text) // CHARS_PER_TOKEN,
                    "completion_tokens": len(content) // CHARS_PER_TOKEN,
                },
            }
        )

    # -- Gemini ------------------------------------------------------------------------------

    async def _gemini(self, request: Request) -> JSONResponse:
        if request.headers.get("x-goog-api-key") != API_KEY:
            return _gemini_error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
        body = await request.json()
        config = body.get("generationConfig", {})
        if config.get("responseMimeType") != "application/json" or "responseSchema" not in config:
            return _gemini_error(400, "responseSchema requires responseMimeType application/json", "INVALID_ARGUMENT")
        fault = await self._arrive("gemini", body)
        if fault and fault.kind in ("rate_limited", "quota"):
            quota = (
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
                if fault.kind == "quota"
                else "GenerateRequestsPerMinutePerProjectPerModel"
            )
            details: list[dict[str, Any]] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota}]}
            ]
            if fault.retry_after:
                details.append(
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{fault.retry_after}s"}
                )
            return _gemini_error(429, "You exceeded your current quota.", "RESOURCE_EXHAUSTED", details)
        if fault and fault.kind == "server_error":
            return _gemini_error(fault.status, "The model is overloaded. Please try again later.", "UNAVAILABLE")
        text = "".join(part.get("text", "") for part in body["contents"][-1]["parts"])
        content, finish = _answer(text, config.get("maxOutputTokens"), fault)
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": content}], "role": "model"},
                        "finishReason": "MAX_TOKENS" if finish == "truncated" else "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {"promptTokenCount": len(text) // CHARS_PER_TOKEN},
                "modelVersion": request.path_params["model"],
            }
        )


def _answer(text: str, max_tokens: int | None, fault: Fault | None) -> tuple[str, str]:
    if fault and fault.kind == "invalid_json":
        return '{"name": "unterminated', "stop"
    content = extract_fields(text).model_dump_json()
    if max_tokens and len(content) > max_tokens * CHARS_PER_TOKEN:
        return content[: max_tokens * CHARS_PER_TOKEN], "truncated"
    return content, "stop"


def _strict(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties") is False and set(schema.get("required", [])) == set(
        schema.get("properties", {})
    )


def _openai_error(status: int, message: str, type: str, code: str | None, headers: dict[str, str] | None = None):
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _gemini_error(status: int, message: str, status_name: str, details: list[dict[str, Any]] | None = None):
    error: dict[str, Any] = {"code": status, "message": message, "status": status_name}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)
