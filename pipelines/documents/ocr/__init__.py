"""OCR engines: tesseract on the worker's own CPUs, or AWS Textract's async API."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OcrResult:
    pages: list[str]
    """Text of each page, in page order."""
    warnings: list[str] = field(default_factory=list)
    """Problems that did not fail the whole document (e.g. Textract's PARTIAL_SUCCESS)."""
