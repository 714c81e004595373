"""OCR with the tesseract CLI, one child process per page, as many at once as CPU cores.

Tesseract's own OpenMP threading is switched off (`OMP_THREAD_LIMIT=1`): pages in parallel
use the cores better than threads inside one page, and it keeps the load bounded.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence

from pipelines.documents.ocr import OcrResult
from pipelines.errors import JobError, PermanentError
from pipelines.subprocesses import OutputTooLarge, run_tool
from pipelines.system_tools import missing_tool


class TesseractOCR:
    """Share one instance per worker process, so all its jobs share the CPU bound."""

    def __init__(
        self,
        *,
        binary: str = "tesseract",
        language: str = "eng",
        concurrency: int | None = None,
        page_timeout: float = 180.0,
    ) -> None:
        self.binary = binary
        self.language = language
        self.page_timeout = page_timeout
        self._slots = asyncio.Semaphore(concurrency or os.cpu_count() or 1)
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    async def recognize(
        self, images: Sequence[str], progress: Callable[[float], Awaitable[None]] | None = None
    ) -> OcrResult:
        """The text of each page image, in order; fails the whole set if one page fails.

        `progress` hears the fraction of pages done each time one finishes."""
        finished = 0

        async def recognize_one(image: str) -> str:
            nonlocal finished
            text = await self.recognize_page(image)
            finished += 1
            if progress is not None:
                await progress(finished / len(images))
            return text

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(recognize_one(image)) for image in images]
        except* JobError as failures:  # the first failure stands for all; the others were cancelled
            raise failures.exceptions[0] from None
        return OcrResult(pages=[task.result() for task in tasks])

    async def recognize_page(self, image: str) -> str:
        async with self._slots:
            try:
                done = await run_tool(
                    [self.binary, image, "stdout", "-l", self.language, "--psm", "3"],
                    timeout=self.page_timeout,
                    env=self._env,
                )
            except FileNotFoundError:
                raise missing_tool("tesseract") from None
            except TimeoutError:
                raise PermanentError(
                    f"OCR of a page took longer than {self.page_timeout:g}s", type="ocr_failed"
                ) from None
            except OutputTooLarge:
                raise PermanentError("OCR of a page printed an implausible amount of text", type="ocr_failed") from None
        if done.returncode != 0:
            message = done.stderr_tail.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise PermanentError(f"tesseract failed: {message[0]}", type="ocr_failed")
        return done.stdout.decode(errors="replace").strip()
