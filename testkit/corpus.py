"""The extraction corpus: documents written as text in tests/corpus/*.yaml, made into PDFs.

Each entry is laid out as its `layout` says (one column, a big-name header, two columns, a
labelled Europass form) with fpdf2; an entry with `scan` is then rendered to an image,
rotated a little and speckled, and wrapped in a PDF with no text layer, so only OCR can read
it. The text of every PDF is read back the way the document pipeline reads it (pdfium's text
layer, tesseract for pages without one), and that text is what extractors are judged on.
Everything is deterministic: the same entry gives the same bytes.
"""

from __future__ import annotations

import asyncio
import io
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pypdfium2
import yaml
from fpdf import FPDF
from PIL import Image

from pipelines.documents.extract import ResumeFields
from pipelines.documents.ocr.tesseract import TesseractOCR
from pipelines.documents.pages import PageLimits
from pipelines.documents.pdf import read_pdf
from pipelines.documents.table import full_text

CORPUS_DIR = Path(__file__).parent.parent / "tests" / "corpus"
SCAN_DPI = 200
SPECKLE = 1
"""Out of 256: the share of pixels a scan turns black (and as many white)."""
EMPTY = ResumeFields(name=None, email=None, phone=None, location=None, links=[], skills=[], summary=None)


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    layout: str
    text: str
    expected: ResumeFields
    header: str = ""
    sidebar: str = ""
    scan: dict | None = None

    @property
    def is_resume(self) -> bool:
        return self.expected != EMPTY


def load() -> list[CorpusDocument]:
    documents = []
    for path in sorted(CORPUS_DIR.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
            expected = {name: None for name in ResumeFields.model_fields} | {"links": [], "skills": []}
            entry["expected"] = ResumeFields(**(expected | entry.get("expected", {})))
            documents.append(CorpusDocument(**entry))
    return documents


# -- making the PDFs -------------------------------------------------------------------------


def render(document: CorpusDocument) -> bytes:
    """The document as a PDF: with a text layer, or as a scan of one."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    if document.layout == "header":
        first, _, rest = document.text.partition("\n")
        _block(pdf, first, size=22, align="C", bold=True)
        _block(pdf, rest, align="C", until_blank=True)
        _block(pdf, rest.split("\n\n", 1)[1] if "\n\n" in rest else "")
    elif document.layout == "columns":
        _block(pdf, document.header, size=18, align="C", bold=True)
        top = pdf.get_y() + 4
        _block(pdf, document.sidebar, x=10, width=55, y=top, size=10)
        bottom = pdf.get_y()
        _block(pdf, document.text, x=72, width=128, y=top)
        pdf.set_y(max(bottom, pdf.get_y()))
    else:
        _block(pdf, document.text, size=11)
    data = bytes(pdf.output())
    return _scanned(data, **document.scan) if document.scan else data


def _block(
    pdf: FPDF,
    text: str,
    *,
    x: float = 10,
    width: float = 190,
    y: float | None = None,
    size: int = 11,
    align: str = "L",
    bold: bool = False,
    until_blank: bool = False,
) -> None:
    if y is not None:
        pdf.set_y(y)
    for line in text.strip("\n").split("\n"):
        if not line.strip():
            if until_blank:
                return
            pdf.ln(3)
            continue
        heading = line.startswith("# ")
        pdf.set_font("helvetica", "B" if bold or heading else "", size + 2 if heading else size)
        pdf.set_x(x)
        pdf.multi_cell(width, size * 0.5, line.removeprefix("# "), align=align, new_x="LMARGIN", new_y="NEXT")


def _scanned(pdf_bytes: bytes, *, rotate: float, seed: int) -> bytes:
    """A page image as a scanner makes it: grey, a little crooked, speckled; no text layer."""
    document = pypdfium2.PdfDocument(pdf_bytes)
    try:
        bitmap = document[0].render(scale=SCAN_DPI / 72, grayscale=True)
        image = bitmap.to_pil().convert("L")
    finally:
        document.close()
    image = image.rotate(rotate, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=235)
    noise = Image.frombytes("L", image.size, random.Random(seed).randbytes(image.width * image.height))
    image.paste(0, mask=noise.point(lambda value: 255 if value < SPECKLE else 0))
    image.paste(255, mask=noise.point(lambda value: 255 if value >= 256 - SPECKLE else 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PDF", resolution=float(SCAN_DPI))
    return buffer.getvalue()


# -- reading them back -----------------------------------------------------------------------


async def read_back(pdf_bytes: bytes, ocr: TesseractOCR) -> str:
    """The PDF's text as the document pipeline gets it: text layer, else tesseract."""
    with tempfile.TemporaryDirectory(prefix="conveyor-corpus-") as directory:
        path = Path(directory) / "document.pdf"
        path.write_bytes(pdf_bytes)
        pages = read_pdf(path, Path(directory), PageLimits(dpi=SCAN_DPI))
        texts = [await ocr.recognize_page(page.image) if page.needs_ocr else page.text for page in pages]
    return full_text(texts)


async def corpus_texts() -> list[tuple[CorpusDocument, str]]:
    """Every corpus document with the text read back from its PDF."""
    ocr = TesseractOCR()
    documents = load()
    texts = await asyncio.gather(*(read_back(render(document), ocr) for document in documents))
    return list(zip(documents, texts, strict=True))
