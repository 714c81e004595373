"""A document's text as it is kept and as the Job shows it.

A small PDF can hold millions of characters (compressed content streams), so the text is
bounded where it is read: each page within `MAX_PAGE_TEXT_CHARS` and the document within
`MAX_DOCUMENT_TEXT_CHARS`, in page order (`TextBudget`). All that is kept goes to the
documents table, which `GET /v1/jobs/{id}/text` pages through, and to a stored file
(`text.txt`); the Job's result holds only its start (`MAX_RESULT_TEXT_CHARS`) and says what
it leaves out, so no Job, and no page of Jobs, grows with the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.documents.pages import TextBudget
from pipelines.documents.table import full_text
from service.storage import job_prefix

if TYPE_CHECKING:
    from pipelines.job_run import JobRun
    from service.config import Settings

TEXT_FILE = "text.txt"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class DocumentText:
    pages: list[str]
    truncated_pages: list[int]
    """Pages whose text was cut, at the page limit or the document's."""

    @property
    def text(self) -> str:
        return full_text(self.pages)


def budget(settings: Settings) -> TextBudget:
    return TextBudget(settings.max_page_text_chars, settings.max_document_text_chars)


def page_limited(numbers: list[int], texts: list[str], settings: Settings) -> tuple[list[str], list[int]]:
    """OCR'd `texts` of pages `numbers`, each within the page limit; the numbers of those cut."""
    kept, cut = [], []
    for number, text in zip(numbers, texts, strict=True):
        kept.append(text[: settings.max_page_text_chars])
        if len(text) > settings.max_page_text_chars:
            cut.append(number)
    return kept, cut


def document_text(outputs: dict[str, dict], settings: Settings) -> DocumentText:
    """Each page's text (its text layer, or what OCR read where it had none) within the budget."""
    read = outputs["text"]
    recognized = outputs.get("ocr", {})
    pages = list(read["pages"])
    for number, text in zip(recognized.get("pages", ()), recognized.get("texts", ()), strict=True):
        pages[number - 1] = text
    truncated = {*read.get("truncated_pages", ()), *recognized.get("truncated_pages", ())}
    kept = budget(settings)
    for index, text in enumerate(pages):
        pages[index], cut = kept.take(text)
        if cut:
            truncated.add(index + 1)
    return DocumentText(pages, sorted(truncated))


async def store_text(run: JobRun, text: str) -> dict:
    """The kept text as the job's `text.txt`; its result entry (the API turns `key` into a URL)."""
    key = job_prefix(run.job["tenant_id"], run.job_id) + TEXT_FILE
    writer = run.resources.storage.writer(key, TEXT_CONTENT_TYPE)
    try:
        await writer.write(text.encode())
        size = await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    return {"key": key, "bytes": size, "content_type": TEXT_CONTENT_TYPE}


def text_result(document: DocumentText, file: dict, settings: Settings) -> dict:
    """The text part of a document's result: its start, and what that leaves out."""
    text = document.text
    shown = text[: settings.max_result_text_chars]
    return {
        "text": shown,
        "text_truncated": len(shown) < len(text) or bool(document.truncated_pages),
        "text_chars": len(text),
        "truncated_pages": document.truncated_pages,
        "text_file": file,
    }
