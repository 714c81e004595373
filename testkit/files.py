"""Real documents made on the spot: PDFs with a text layer, scanned pages, images."""

from __future__ import annotations

import io

from fpdf import FPDF


def text_pdf(*pages: str) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=14)
    for text in pages or ("Hello from Conveyor",):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def multipart_file(content: bytes, filename: str = "file.pdf", content_type: str = "application/pdf") -> dict:
    return {"file": (filename, io.BytesIO(content), content_type)}
