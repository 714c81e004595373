"""Turning an uploaded document into pages: their text layer, or an image to OCR.

`read_pages` is the entry point. The parsing and rendering run in a child process
(`page_reader`), one per document, rather than in a thread or a process pool, because:
pdfium is not thread-safe (so no threads), a hostile PDF can crash or hang it (a crash
would break a shared pool for every other job, and a pool worker cannot be killed on a
timeout), and a child can be given its own memory limit. Children are forked from a
server that imported the reader once (`forked`), so each starts in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.documents.forked import ForkServer
from pipelines.errors import PermanentError

MiB = 1024 * 1024


@dataclass(frozen=True)
class PageLimits:
    """Bounds on one document's pages: how many, how large, how long, how much memory."""

    max_pages: int = 500
    dpi: int = 300
    max_pixels: int = 40_000_000
    """Largest image accepted, and the cap a page is rendered within (dpi is lowered to fit)."""
    min_text_chars: int = 16
    """Letters and digits a page's text layer needs to count as text rather than a scan."""
    render: bool = True
    """Render pages that need OCR to images (an OCR service reading the original needs none)."""
    timeout: float = 300.0
    memory_bytes: int = 2048 * MiB
    """Address space the reader may map beyond what it inherits from the fork server."""


@dataclass(frozen=True)
class Page:
    number: int
    text: str
    """The text layer ('' for images and pages without one)."""
    needs_ocr: bool = False
    """No meaningful text layer: only OCR can read this page."""
    image: str | None = None
    """Path of the page rendered as a PNG, when it needs OCR and `limits.render` is on."""


@dataclass(frozen=True)
class DocumentPages:
    mime: str
    pages: list[Page] = field(default_factory=list)

    @property
    def needing_ocr(self) -> list[Page]:
        return [page for page in self.pages if page.needs_ocr]


def has_meaningful_text(text: str, min_chars: int) -> bool:
    """A text layer worth keeping: enough letters and digits, not just a page number."""
    return sum(char.isalnum() for char in text) >= min_chars


class PageReaders:
    """Reads documents, at most `concurrency` at once, each in a child forked for it from
    one warm server (`forked`), so a child starts in milliseconds, not a fraction of a second."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._server = ForkServer("pipelines.documents.page_reader:serve")

    async def read(self, path: Path, workdir: Path, limits: PageLimits = PageLimits()) -> DocumentPages:
        """Read the document at `path`; images of pages to OCR are written into `workdir`.

        Raises `PermanentError` for anything wrong with the document itself (`unsupported_document`,
        `encrypted_pdf`, `corrupt_pdf`, `corrupt_image`, `too_many_pages`, `image_too_large`,
        `document_too_complex`, `unreadable_document`).
        """
        reply_path = workdir / "reply.json"
        request = {"path": str(path), "workdir": str(workdir), "limits": asdict(limits)}
        try:
            async with self._slots:
                exitcode = await self._server.call([request, str(reply_path)], timeout=limits.timeout)
            reply = json.loads(await asyncio.to_thread(reply_path.read_text)) if exitcode == 0 else None
        except TimeoutError:
            raise PermanentError(
                f"reading the document took longer than {limits.timeout:g}s", type="document_too_complex"
            ) from None
        except (OSError, ValueError):
            reply = None
        finally:
            reply_path.unlink(missing_ok=True)
        if not isinstance(reply, dict):
            how = f"was killed by signal {-exitcode}" if exitcode < 0 else f"exited with code {exitcode}"
            raise PermanentError(f"the document could not be read: the reader {how}", type="unreadable_document")
        if "error" in reply:
            raise PermanentError(reply["error"]["message"], type=reply["error"]["type"])
        return DocumentPages(mime=reply["mime"], pages=[Page(**page) for page in reply["pages"]])

    async def aclose(self) -> None:
        await self._server.aclose()
