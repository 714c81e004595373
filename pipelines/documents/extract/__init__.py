"""Résumé field extraction: rule-based (embedded default), OpenAI-compatible, or Gemini."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pipelines.documents.extract.assess import Extraction, assess
from pipelines.documents.extract.schema import ResumeFields
from service.ratelimit import Rate, RateLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from service.config import Settings

LLM_RATE_PREFIX = "conveyor:llm-rate:"  # a provider's limit is per account: one bucket for every worker

__all__ = ["Extraction", "Extractor", "ResumeFields", "extract_document", "extractor_for"]


class Extractor(Protocol):
    async def extract(self, text: str) -> ResumeFields: ...

    async def aclose(self) -> None: ...


async def extract_document(extractor: Extractor, text: str) -> Extraction:
    """The fields `extractor` finds in `text`, judged: emptied unless the text is a résumé, and
    each with its confidence (see `assess`)."""
    return assess(text, await extractor.extract(text))


def extractor_for(settings: Settings, redis: Redis | None) -> Extractor:
    """The extractor `settings.llm_provider` names; LLMs share a rate limit through `redis`.

    Create one per worker process and `aclose` it at shutdown (it holds a connection pool).
    """
    if settings.llm_provider == "rules":
        from pipelines.documents.extract.rules import RulesExtractor

        return RulesExtractor()
    if redis is None:
        raise ValueError(f"the {settings.llm_provider} extractor needs Redis for its shared rate limit")
    from pipelines.documents.extract.llm import LLMExtractor

    chosen: type[LLMExtractor]
    if settings.llm_provider == "openai":
        from pipelines.documents.extract.openai import OpenAIExtractor

        chosen = OpenAIExtractor
    else:
        from pipelines.documents.extract.gemini import GeminiExtractor

        chosen = GeminiExtractor
    options: dict[str, Any] = {
        "api_key": settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        "timeout": settings.llm_timeout,
        "limiter": RateLimiter(
            redis,
            {settings.llm_provider: Rate.per_minute(settings.llm_rate_per_minute)},
            prefix=LLM_RATE_PREFIX,
            max_wait=30.0,
            error_type="llm_rate_limited",
        ),
    }
    if settings.llm_base_url:
        options["base_url"] = settings.llm_base_url
    if settings.llm_model:
        options["model"] = settings.llm_model
    return chosen(**options)
