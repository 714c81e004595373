"""The document pipeline: store → text → ocr → extract → persist.

- store: the API already put the upload in the bucket; this stage downloads it once into
  the attempt's workspace, checks size and sha256 against what the API recorded, and
  records the document (so it can be found by metadata and status from then on).
- text: pages with a text layer are read as they are (a child process, bounded per worker);
  only the others go to OCR.
- ocr: tesseract on the rendered pages, concurrently, or Textract on the original in S3,
  resumable: its JobId is checkpointed before polling, and a re-run polls the same job.
- extract: the résumé fields, by the configured extractor (rules, OpenAI, Gemini).
- persist: text, per-page text and fields into the documents table, and the text as a
  stored file; the Job's result shows only the start of the text (pipelines/documents/text.py).

Each stage's output is its checkpoint, so a re-run never redoes a finished stage. The
workspace (the attempt's scratch directory) lives for one attempt; a resumed attempt that needs the
pages again reads them again from the original.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from conveyor.kinds import Pipeline, Stage
from conveyor.outcomes import Skip
from pipelines.documents import table
from pipelines.documents.extract import ResumeFields, extract_document
from pipelines.documents.ocr.textract import request_token_for
from pipelines.documents.pages import DocumentPages, PageLimits
from pipelines.documents.text import document_text, page_limited, store_text, text_result
from pipelines.documents.tools import DocumentTools
from service.errors import PermanentError
from service.storage import ObjectNotFound, S3Storage
from service.storage.file_modes import private_opener

if TYPE_CHECKING:
    from pipelines.job_run import JobRun

TEXTRACT_RESTART_ERRORS = frozenset({"textract_failed", "textract_timeout", "textract_invalid_job"})
EMPTY_FIELDS = ResumeFields(
    name=None, email=None, phone=None, location=None, links=[], skills=[], summary=None
).model_dump()


class DocumentWorkspace:
    """One attempt's files: the original, downloaded and verified once; its pages, read once."""

    def __init__(self, run: JobRun, directory: Path) -> None:
        self.run = run
        self.directory = directory
        self._original: Path | None = None
        self._pages: DocumentPages | None = None

    async def original(self) -> Path:
        if self._original is None:
            self._original = await self._download()
        return self._original

    async def pages(self) -> DocumentPages:
        if self._pages is None:
            settings = self.run.settings
            limits = PageLimits(
                max_pages=settings.max_document_pages,
                max_ocr_pixels=settings.max_document_ocr_pixels,
                max_page_chars=settings.max_page_text_chars,
                max_text_chars=settings.max_document_text_chars,
                render=settings.ocr_provider != "textract",
            )
            original = await self.original()  # page images go beside it, as page-NNNN.png
            self._pages = await self.run.shared.readers.read(original, self.directory, limits)
        return self._pages

    async def _download(self) -> Path:
        expected = self.run.payload["input"]
        path = self.directory / "original"
        digest = hashlib.sha256()
        size = 0
        handle = await asyncio.to_thread(open, path, "wb", opener=private_opener)
        try:
            async with contextlib.aclosing(self.run.resources.storage.read(expected["key"])) as chunks:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > expected["size"]:
                        break
                    await asyncio.to_thread(_write_and_hash, handle, digest, chunk)
        except ObjectNotFound:
            raise PermanentError("the uploaded original is missing from storage", type="input_missing") from None
        finally:
            handle.close()
        if size != expected["size"] or digest.hexdigest() != expected["sha256"]:
            raise PermanentError(
                f"the stored original ({size} bytes) is not the upload the API accepted "
                f"({expected['size']} bytes, sha256 {expected['sha256'][:12]}…)",
                type="input_mismatch",
            )
        return path


def _write_and_hash(handle: IO[bytes], digest, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


@contextlib.asynccontextmanager
async def workspace(run: JobRun) -> AsyncIterator[DocumentWorkspace]:
    """In the attempt's scratch directory (`run.workdir()`: under `WORK_DIR`, removed by the
    runner when the attempt ends)."""
    yield DocumentWorkspace(run, await asyncio.to_thread(run.workdir))


# -- the stages -----------------------------------------------------------------------------


async def store(run: JobRun, input: dict) -> dict:
    expected = run.payload["input"]
    limit = run.settings.max_document_bytes
    if expected["size"] > limit:
        raise PermanentError(f"the document is {expected['size']} bytes, more than {limit}", type="document_too_large")
    await run.workspace.original()
    original = {key: expected[key] for key in ("key", "size", "sha256", "content_type")}
    async with run.resources.db.write(track=(f"tenant:{run.job['tenant_id']}",)) as conn:
        await table.record_original(conn, run.job, original)
    return original


async def read_text(run: JobRun, input: dict) -> dict:
    document = await run.workspace.pages()
    return {
        "content_type": document.mime,
        "pages": [page.text for page in document.pages],
        "ocr_pages": [page.number for page in document.needing_ocr],
        "truncated_pages": [page.number for page in document.pages if page.truncated],
    }


async def ocr(run: JobRun, input: dict) -> dict:
    numbers = run.outputs["text"]["ocr_pages"]
    if not numbers:
        raise Skip("every page has a text layer")
    if run.settings.ocr_provider == "textract":
        texts, warnings = await _textract(run, numbers)
    else:
        texts, warnings = await _tesseract(run, numbers), []
    texts, truncated = page_limited(numbers, texts, run.settings)
    return {
        "engine": run.settings.ocr_provider,
        "pages": numbers,
        "texts": texts,
        "truncated_pages": truncated,
        "warnings": warnings,
    }


async def _tesseract(run: JobRun, numbers: list[int]) -> list[str]:
    wanted = set(numbers)
    document = await run.workspace.pages()
    images = [page.image for page in document.pages if page.number in wanted]
    result = await run.shared.tesseract.recognize(images, progress=run.progress)
    return result.pages


async def _textract(run: JobRun, numbers: list[int]) -> tuple[list[str], list[str]]:
    """Start (idempotently) or resume the Textract job of this document, then collect it."""
    storage = run.resources.storage
    textract = run.shared.textract
    if not isinstance(storage, S3Storage) or textract is None:
        raise PermanentError(
            "OCR_PROVIDER=textract reads documents from S3: set STORAGE_URL=s3://bucket/prefix "
            "(Textract cannot read a file:// storage)",
            type="configuration_error",
        )
    saved = run.saved or {}
    generation = saved.get("textract_run", 0)
    textract_job = saved.get("textract_job_id")
    if textract_job is None:
        bucket, key = storage.location(run.payload["input"]["key"])
        textract_job = await textract.start(bucket, key, request_token_for(str(run.job_id), generation))
        deadline = time.time() + run.settings.textract_poll_deadline
        await run.save({"textract_run": generation, "textract_job_id": textract_job, "deadline": deadline})
    else:
        deadline = saved["deadline"]
    try:
        result = await textract.collect(textract_job, deadline=deadline)
    except PermanentError as exc:
        if exc.type in TEXTRACT_RESTART_ERRORS:  # a retry of the job must start a new Textract job
            await run.save({"textract_run": generation + 1})
        raise
    return [result.pages[number - 1] if number <= len(result.pages) else "" for number in numbers], result.warnings


async def extract(run: JobRun, input: dict) -> dict:
    text = document_text(run.outputs, run.settings).text
    if not text.strip():
        raise Skip("the document has no text")
    extraction = await extract_document(run.shared.extractor, text)
    return extraction.result()


async def persist(run: JobRun, input: dict) -> dict:
    """The text where it is read whole (table and file); the part of the result it makes."""
    document = document_text(run.outputs, run.settings)
    text_file = await store_text(run, document.text)
    async with run.resources.db.write(track=(f"tenant:{run.job['tenant_id']}",)) as conn:
        await table.record_extraction(conn, run.job_id, document.pages, extracted_fields(run.outputs))
    return text_result(document, text_file, run.settings)


# -- the result -----------------------------------------------------------------------------


def extracted_fields(outputs: dict[str, dict]) -> dict:
    return outputs.get("extract", {}).get("fields", EMPTY_FIELDS)


def document_result(outputs: dict[str, dict]) -> dict:
    recognized = outputs.get("ocr", {})
    return {
        **outputs["persist"],
        "pages": len(outputs["text"]["pages"]),
        "fields": extracted_fields(outputs),
        "field_confidence": outputs.get("extract", {}).get("field_confidence", dict.fromkeys(EMPTY_FIELDS)),
        "resume_confidence": outputs.get("extract", {}).get("resume_confidence"),
        "content_type": outputs["text"]["content_type"],
        "ocr": {"engine": recognized["engine"], "pages": recognized["pages"]} if "engine" in recognized else None,
        "warnings": recognized.get("warnings", []),
    }


DOCUMENT_PIPELINE = Pipeline(
    "document",
    (
        Stage("store", store, weight=1),
        Stage("text", read_text, weight=2),
        Stage("ocr", ocr, weight=6),
        Stage("extract", extract, weight=3),
        Stage("persist", persist, weight=1),
    ),
    timeout=1800.0,  # Textract may take up to TEXTRACT_POLL_DEADLINE (15 min) by itself
    tries=5,
    shared=DocumentTools.open,
    result=document_result,
    workspace=workspace,
    description="Read a PDF or an image: its text (OCR'd where there is no text layer), pages and fields.",
    endpoint="/v1/documents",
)
