"""PDF pages with pdfium: the text layer of each page, and a bounded render of scanned ones.

Runs inside the `page_reader` child process only (pdfium is not thread-safe). Text is
kept within the document's `TextBudget`; the pages to OCR are priced in pixels before any
is rendered, so a document that would cost too much OCR fails without costing any.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pypdfium2
import pypdfium2.raw as pdfium_c

from pipelines.documents.pages import Page, PageLimits, TextBudget, check_ocr_pixels, has_meaningful_text
from service.errors import PermanentError
from service.storage.file_modes import private_opener

POINTS_PER_INCH = 72


def read_pdf(path: Path, workdir: Path, limits: PageLimits) -> list[Page]:
    pdf = _open(path)
    try:
        count = len(pdf)
        if count == 0:
            raise PermanentError("the PDF has no pages", type="corrupt_pdf")
        if count > limits.max_pages:
            raise PermanentError(f"the PDF has {count} pages, more than {limits.max_pages}", type="too_many_pages")
        budget = TextBudget(limits.max_page_chars, limits.max_text_chars)
        pages = [_read_text(pdf, index, budget, limits) for index in range(count)]
        return _render_scans(pdf, pages, workdir, limits) if limits.render else pages
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


def _page(pdf: pypdfium2.PdfDocument, index: int) -> pypdfium2.PdfPage:
    try:
        return pdf[index]
    except pypdfium2.PdfiumError:
        raise PermanentError(f"page {index + 1} of the PDF is corrupt", type="corrupt_pdf") from None


def _read_text(pdf: pypdfium2.PdfDocument, index: int, budget: TextBudget, limits: PageLimits) -> Page:
    """The page's text layer as the budget keeps it; once the budget is spent, pages are not read."""
    number = index + 1
    if budget.spent:
        return Page(number=number, text="", truncated=True)
    page = _page(pdf, index)
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded().replace("\r\n", "\n")
        finally:
            textpage.close()
    finally:
        page.close()
    kept, truncated = budget.take(text)
    return Page(
        number=number, text=kept, needs_ocr=not has_meaningful_text(text, limits.min_text_chars), truncated=truncated
    )


def _render_scans(pdf: pypdfium2.PdfDocument, pages: list[Page], workdir: Path, limits: PageLimits) -> list[Page]:
    """`pages` with those that need OCR rendered, once their pixels are known to be within budget."""
    plans = {page.number: _render_plan(pdf, page.number - 1, limits) for page in pages if page.needs_ocr}
    check_ocr_pixels(sum(pixels for _, pixels in plans.values()), len(plans), limits)
    rendered = []
    for page in pages:
        if page.number in plans:
            image = workdir / f"page-{page.number:04d}.png"
            _render(pdf, page.number - 1, plans[page.number][0], image)
            page = dataclasses.replace(page, image=str(image))
        rendered.append(page)
    return rendered


def _render_plan(pdf: pypdfium2.PdfDocument, index: int, limits: PageLimits) -> tuple[float, int]:
    """The scale page `index` is rendered at (`limits.dpi`, lowered so the bitmap stays within
    `limits.max_pixels`), and the pixels that makes."""
    width, height = pdf.get_page_size(index)
    area = (width + 1) * (height + 1)  # square points; +1: pdfium rounds up
    scale = min(limits.dpi / POINTS_PER_INCH, math.sqrt(limits.max_pixels / area))
    return scale, math.ceil(area * scale * scale)


def _render(pdf: pypdfium2.PdfDocument, index: int, scale: float, target: Path) -> None:
    page = _page(pdf, index)
    try:
        bitmap = page.render(scale=scale, grayscale=True)
        try:
            with open(target, "wb", opener=private_opener) as file:
                bitmap.to_pil().save(file, format="PNG")
        finally:
            bitmap.close()
    finally:
        page.close()
