"""Turning an uploaded document into pages: their text layer, or an image to OCR.

`PageReaders.read` is the entry point. The parsing and rendering run in reader processes
(`page_reader`), each owned by one read at a time, rather than in a thread or a shared
process pool, because: pdfium is not thread-safe (so no threads), a hostile PDF can crash
or hang it (a crash would break a shared pool for every other job, and a pool worker cannot
be killed on a timeout), and a reader can be given a memory limit for each document.
Readers are forked from a server that imported the reader once (`forked`), so each starts
in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.documents.forked import Child, ForkServer
from service.errors import PermanentError, TransientError

MiB = 1024 * 1024
REPLY_LIMIT = 256 * MiB
"""Largest manifest a reader may send (a 500-page document's text is a few MiB)."""
READER_START_TIMEOUT = 30.0
READER_EXIT_TIMEOUT = 5.0
"""How long a reader that hung up mid-read has to end before it is killed."""
RETIRING = frozenset({"document_too_complex", "unreadable_document"})
"""Errors after which a reader is replaced: its memory or its parser may be in a bad state."""


@dataclass(frozen=True)
class PageLimits:
    """Bounds on one document's pages: how many, how large, how long, how much memory."""

    max_pages: int = 500
    dpi: int = 300
    max_pixels: int = 40_000_000
    """Largest image accepted, and the cap a page is rendered within (dpi is lowered to fit)."""
    max_ocr_pixels: int = 2_000_000_000
    """Pixels of all the pages to OCR together, checked before any is rendered: OCR's work
    grows with them, so a document of many huge pages fails at once instead of hogging CPU."""
    max_page_chars: int = 50_000
    """Characters of text kept per page; the rest is dropped (the page is `truncated`)."""
    max_text_chars: int = 2_000_000
    """Characters of text kept per document, in page order; pages past it are not read."""
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
    truncated: bool = False
    """Its text is not all there: cut at `max_page_chars`, or not read (the document's text
    had reached `max_text_chars`)."""


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


class TextBudget:
    """The text one document may keep: up to `page_chars` a page and `document_chars` in
    all, taken in page order. Dense text is cheap to hide in a small PDF (a compressed page
    can hold millions of characters), and every copy of it (checkpoints, the documents
    table, the text file) is bounded by this."""

    def __init__(self, page_chars: int, document_chars: int) -> None:
        self.page_chars = page_chars
        self.left = document_chars

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self, text: str) -> tuple[str, bool]:
        """The part of a page's `text` that is kept, and whether any was dropped."""
        kept = text[: max(0, min(self.page_chars, self.left))]
        self.left -= len(kept)
        return kept, len(kept) < len(text)


def check_ocr_pixels(pixels: int, pages: int, limits: PageLimits) -> None:
    """Raises `ocr_budget_exceeded` when `pages` pages to OCR come to more than
    `limits.max_ocr_pixels` (as rendered, or as the images are)."""
    if pixels > limits.max_ocr_pixels:
        raise PermanentError(
            f"the {pages} pages to OCR come to {pixels:,} pixels, more than the "
            f"{limits.max_ocr_pixels:,} one document may have",
            type="ocr_budget_exceeded",
        )


class PageReaders:
    """Reads documents, at most `concurrency` at once, each in a reader process of its own.

    A reader is forked from one warm server (`forked`) and kept for `reads_per_reader`
    documents, one at a time: forking a child per document cost ~7 ms of CPU for a read that
    takes ~0.2 ms. A reader that overran, was cancelled, ran out of memory or failed in a way
    the parser did not foresee is killed and replaced, so no document can hang, starve or
    poison the ones after it; the memory limit is set afresh for each document. One that
    holds more than `max_resident_bytes` after a read (a large render leaves the allocator's
    arenas behind) is replaced too, so idle readers do not keep a big document's memory.
    """

    def __init__(self, concurrency: int, *, reads_per_reader: int = 100, max_resident_bytes: int = 256 * MiB) -> None:
        self.concurrency = concurrency
        self.reads_per_reader = reads_per_reader
        self.max_resident_bytes = max_resident_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[_Reader] = []
        self._server = ForkServer("pipelines.documents.page_reader:serve")
        self._directory: str | None = None
        self._listener: asyncio.Server | None = None
        self._listening = asyncio.Lock()
        self._greetings: dict[int, asyncio.Future] = {}

    async def read(self, path: Path, workdir: Path, limits: PageLimits = PageLimits()) -> DocumentPages:
        """Read the document at `path`; images of pages to OCR are written into `workdir`.

        Raises `PermanentError` for anything wrong with the document itself (`unsupported_document`,
        `encrypted_pdf`, `corrupt_pdf`, `corrupt_image`, `too_many_pages`, `image_too_large`,
        `ocr_budget_exceeded`, `document_too_complex`, `unreadable_document`).
        """
        request = {"path": str(path), "workdir": str(workdir), "limits": asdict(limits)}
        async with self._slots:
            reply = await self._ask(await self._reader(), request, limits.timeout)
        if "error" in reply:
            raise PermanentError(reply["error"]["message"], type=reply["error"]["type"])
        return DocumentPages(mime=reply["mime"], pages=[Page(**page) for page in reply["pages"]])

    async def _ask(self, reader: _Reader, request: dict, timeout: float) -> dict:
        """`reader`'s answer to `request`; the reader then goes back idle or is replaced.
        Raises `PermanentError` when the read overran or the reader failed."""
        keep = False
        try:
            async with asyncio.timeout(timeout):
                reply = await reader.ask(request)
            keep = (
                reader.reads < self.reads_per_reader
                and reply["resident"] <= self.max_resident_bytes
                and reply.get("error", {}).get("type") not in RETIRING
            )
            return reply
        except TimeoutError:
            raise PermanentError(
                f"reading the document took longer than {timeout:g}s", type="document_too_complex"
            ) from None
        except _ReaderGone as gone:
            if gone.why is not None or reader.reads == 1:
                raise PermanentError(
                    f"the document could not be read: the reader {await reader.fate(gone.why)}",
                    type="unreadable_document",
                ) from None
        finally:
            if keep:
                self._idle.append(reader)
            else:
                await asyncio.shield(reader.stop())
        # A kept reader hung up: it may have died idle before this document reached it, so a
        # new reader tries once more (a document that kills readers kills that one too).
        return await self._ask(await self._reader(fresh=True), request, timeout)

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().stop()
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        await self._server.aclose()

    async def _reader(self, *, fresh: bool = False) -> _Reader:
        """An idle reader that is still alive (unless `fresh`), or a new one."""
        while self._idle and not fresh:
            reader = self._idle.pop()
            if reader.child.running:
                return reader
            await reader.stop()  # it died idle (say, with its fork server): reap it
        socket_path = await self._socket_path()
        child = await self._server.spawn([socket_path])
        greeting = self._greetings.setdefault(child.pid, asyncio.get_running_loop().create_future())
        exited = asyncio.ensure_future(child.exited())
        try:
            await asyncio.wait([greeting, exited], timeout=READER_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await asyncio.shield(child.end(kill=True))
            raise
        finally:
            exited.cancel()
            self._greetings.pop(child.pid, None)
        if not greeting.done():
            await child.end(kill=True)
            raise TransientError("a document reader did not start", type="reader_unavailable")
        return _Reader(child, *greeting.result())

    async def _socket_path(self) -> str:
        """The private socket readers connect back to, made on first use."""
        async with self._listening:
            if self._listener is None:
                self._directory = await asyncio.to_thread(tempfile.mkdtemp, prefix="conveyor-readers-")
                path = os.path.join(self._directory, "readers.sock")
                self._listener = await asyncio.start_unix_server(self._greet, path, limit=REPLY_LIMIT)
        assert self._directory is not None  # made with the listener
        return os.path.join(self._directory, "readers.sock")

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid = json.loads(await reader.readline())["pid"]
        except (ValueError, KeyError, TypeError):
            writer.close()
            return
        greeting = self._greetings.setdefault(pid, asyncio.get_running_loop().create_future())
        if greeting.done():  # nobody is waiting for it any more
            writer.close()
        else:
            greeting.set_result((reader, writer))


class _ReaderGone(Exception):
    """The reader hung up mid-read (`why` None: it died), or answered what cannot be read."""

    def __init__(self, why: str | None = None) -> None:
        super().__init__(why)
        self.why = why


class _Reader:
    """One reader process and the connection it answers on, one document at a time."""

    def __init__(self, child: Child, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.child = child
        self.reads = 0
        self._reader = reader
        self._writer = writer

    async def ask(self, request: dict) -> dict:
        self.reads += 1
        try:
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            line = await self._reader.readline()
        except ConnectionError:
            raise _ReaderGone from None
        except ValueError:  # asyncio's LimitOverrunError, reported as such by readline
            raise _ReaderGone(f"answered more than {REPLY_LIMIT:,} bytes") from None
        if not line.endswith(b"\n"):
            raise _ReaderGone
        try:
            return json.loads(line)
        except ValueError:
            raise _ReaderGone("answered something other than JSON") from None

    async def fate(self, why: str | None) -> str:
        """What became of this reader after it failed, for the error: why it was killed, or
        how it ended."""
        if why is not None:
            await self.child.end(kill=True)
            return why
        try:
            exitcode = await self.child.wait(timeout=READER_EXIT_TIMEOUT)
        except TimeoutError:
            return "hung up and had to be killed"
        return f"was killed by signal {-exitcode}" if exitcode < 0 else f"exited with code {exitcode}"

    async def stop(self) -> None:
        self._writer.close()
        await self.child.end(kill=True)
