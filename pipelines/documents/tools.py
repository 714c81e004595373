"""What one worker process holds for all its document jobs, opened at start, closed at exit.

One tesseract bound (the number of cores) and one page-reader bound per process, so
hundreds of documents in flight share the CPUs instead of oversubscribing them; one
extractor, whose connection pool and shared rate limit serve every job.

Page readers get four slots a core (`DOCUMENT_READER_CONCURRENCY`): reading a text layer
takes well under a millisecond of CPU, and most of a read's time is the hand-offs to and
from its reader through a busy worker's event loop, when a core would sit idle with one
slot a core (documents bench, 100 at once, when each read forked a child: the text stage
0.43 → 0.29 s a document).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import aioboto3
from redis.asyncio import Redis

from pipelines.documents.extract import Extractor, extractor_for
from pipelines.documents.ocr.tesseract import TesseractOCR
from pipelines.documents.ocr.textract import TextractOCR
from pipelines.documents.ocr.textract_notices import TextractNotices
from pipelines.documents.pages import PageReaders
from service.config import Settings

READER_SLOTS_PER_CORE = 4


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
            session = aioboto3.Session()
            channel, notices = None, None
            topic, role = settings.textract_sns_topic_arn, settings.textract_sns_role_arn
            if settings.textract_sqs_queue_url and topic and role:  # the three go together (Settings)
                channel = {"SNSTopicArn": topic, "RoleArn": role}
                notices = TextractNotices(
                    session,
                    redis,
                    settings.textract_sqs_queue_url,
                    endpoint_url=settings.sqs_endpoint_url,
                    region_name=settings.region,
                )
            textract = TextractOCR(
                session,
                endpoint_url=settings.textract_endpoint_url,
                region_name=settings.region,
                poll_interval=settings.textract_poll_interval,
                max_poll_interval=settings.textract_max_poll_interval,
                notification_channel=channel,
                notices=notices,
            )
        return cls(
            tesseract=TesseractOCR(concurrency=cores),
            textract=textract,
            extractor=extractor_for(settings, redis),
            readers=PageReaders(concurrency=settings.document_reader_concurrency or READER_SLOTS_PER_CORE * cores),
        )

    async def aclose(self) -> None:
        await self.extractor.aclose()
        await self.readers.aclose()
        if self.textract is not None:
            await self.textract.aclose()
