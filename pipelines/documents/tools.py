"""What one worker process holds for all its document jobs, opened at start, closed at exit.

One tesseract bound and one page-reader bound per process (both the number of cores), so
hundreds of documents in flight share the CPUs instead of oversubscribing them; one
extractor, whose connection pool and shared rate limit serve every job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import aioboto3
from redis.asyncio import Redis

from pipelines.documents.extract import Extractor, extractor_for
from pipelines.documents.pages import PageReaders
from pipelines.documents.ocr.tesseract import TesseractOCR
from pipelines.documents.ocr.textract import TextractOCR
from service.config import Settings


@dataclass
class DocumentTools:
    tesseract: TesseractOCR
    textract: TextractOCR | None
    extractor: Extractor
    readers: PageReaders

    @classmethod
    def open(cls, settings: Settings, redis: Redis) -> DocumentTools:
        cores = os.cpu_count() or 1
        textract = None
        if settings.ocr_provider == "textract":
            textract = TextractOCR(
                aioboto3.Session(), endpoint_url=settings.textract_endpoint_url, region_name=settings.region,
                poll_interval=settings.textract_poll_interval, max_poll_interval=settings.textract_max_poll_interval,
            )
        return cls(
            tesseract=TesseractOCR(concurrency=cores),
            textract=textract,
            extractor=extractor_for(settings, redis),
            readers=PageReaders(concurrency=cores),
        )

    async def aclose(self) -> None:
        await self.extractor.aclose()
        await self.readers.aclose()
        if self.textract is not None:
            await self.textract.aclose()
