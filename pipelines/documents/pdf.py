"""PDF pages with pdfium: the text layer of each page, and a bounded render of scanned ones.

Runs inside the `page_reader` child process only (pdfium is not thread-safe).
"""

from __future__ import annotations

import math
from pathlib import Path

import pypdfium2
import pypdfium2.raw as pdfium_c

from pipelines.documents.pages import Page, PageLimits, has_meaningful_text
from pipelines.errors import PermanentError

POINTS_PER_INCH = 72


def read_pdf(path: Path, workdir: Path, limits: PageLimits) -> list[Page]:
    pdf = _open(path)
    try:
        count = len(pdf)
        if count == 0:
            raise PermanentError("the PDF has no pages", type="corrupt_pdf")
        if count > limits.max_pages:
            raise PermanentError(f"the PDF has {count} pages, more than {limits.max_pages}", type="too_many_pages")
        return [_read_page(pdf, index, workdir, limits) for index in range(count)]
    finally:
        pdf.close()


def _open(path: Path) -> pypdfium2.PdfDocument:
    try:
        return pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise PermanentError("the PDF is password-protected", type="encrypted_pdf") from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise PermanentError("the PDF uses an unsupported security handler", type="encrypted_pdf") from None
        raise PermanentError(f"the PDF is corrupt or truncated ({exc})", type="corrupt_pdf") from None


def _read_page(pdf: pypdfium2.PdfDocument, index: int, workdir: Path, limits: PageLimits) -> Page:
    number = index + 1
    try:
        page = pdf[index]
    except pypdfium2.PdfiumError:
        raise PermanentError(f"page {number} of the PDF is corrupt", type="corrupt_pdf") from None
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded().replace("\r\n", "\n")
        finally:
            textpage.close()
        if has_meaningful_text(text, limits.min_text_chars):
            return Page(number=number, text=text)
        if not limits.render:
            return Page(number=number, text=text, needs_ocr=True)
        image = workdir / f"page-{number:04d}.png"
        _render(page, image, limits)
        return Page(number=number, text=text, needs_ocr=True, image=str(image))
    finally:
        page.close()


def _render(page: pypdfium2.PdfPage, target: Path, limits: PageLimits) -> None:
    """Render at `limits.dpi`, lowered so the bitmap stays within `limits.max_pixels`."""
    width, height = page.get_size()
    scale = limits.dpi / POINTS_PER_INCH
    if (width + 1) * (height + 1) * scale * scale > limits.max_pixels:
        scale = math.sqrt(limits.max_pixels / ((width + 1) * (height + 1)))  # +1: pdfium rounds up
    bitmap = page.render(scale=scale, grayscale=True)
    try:
        bitmap.to_pil().save(target, format="PNG")
    finally:
        bitmap.close()
