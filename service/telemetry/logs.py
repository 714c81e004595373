"""Structured JSON logs (structlog), with secrets masked in every line.

Standard-library loggers (arq, uvicorn, ours) go through the same renderer, so one
process writes one format. Masking runs last: a password in a URL, or the value of any
secret setting, never reaches the output, whatever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr
from structlog.typing import Processor

from service.config import Settings

URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):[^@/\s]+@")
BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


class SecretMasker:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [secret for secret in secrets if len(secret) >= 6]

    def mask(self, text: str) -> str:
        text = URL_PASSWORD.sub(r"\1:***@", text)
        text = BEARER.sub(r"\1***", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def __call__(self, logger: object, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        return {key: self.mask(value) if isinstance(value, str) else value for key, value in event_dict.items()}


def secret_values(settings: Settings) -> list[str]:
    return [value.get_secret_value() for value in settings.__dict__.values() if isinstance(value, SecretStr)]


def configure_logging(settings: Settings) -> None:
    masker = SecretMasker(secret_values(settings))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, masker, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    structlog.configure(
        # Level first: a line below LOG_LEVEL costs a comparison, not the whole chain.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
