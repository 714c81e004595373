"""Documents the tests make themselves: text PDFs, scanned PDFs, images with real text."""

from __future__ import annotations

import io
import zlib

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont


def text_pdf(*pages: str, user_password: str | None = None) -> bytes:
    """A PDF with a real text layer, one string per page."""
    pdf = FPDF()
    if user_password:
        pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def text_image(text: str, *, size: tuple[int, int] = (900, 160), font_size: int = 48) -> Image.Image:
    """Black text on white, large enough for tesseract to read reliably."""
    image = Image.new("L", size, color=255)
    draw = ImageDraw.Draw(image)
    draw.multiline_text((30, 30), text, fill=0, font=ImageFont.load_default(size=font_size), spacing=20)
    return image


def image_bytes(*images: Image.Image, format: str) -> bytes:
    """Images encoded as `format`; several images make a multi-page TIFF (or PDF)."""
    buffer = io.BytesIO()
    first, *rest = images
    options = {"save_all": True, "append_images": rest} if rest else {}
    if format == "PDF":
        options["resolution"] = 150.0
    first.save(buffer, format=format, **options)
    return buffer.getvalue()


def scanned_pdf(*texts: str) -> bytes:
    """A PDF of page images only (no text layer), like a scanner makes."""
    return image_bytes(*(text_image(text, size=(1240, 300)) for text in texts), format="PDF")


def mixed_pdf(text: str, scanned_text: str) -> bytes:
    """Page 1 has a text layer; page 2 is only an image of `scanned_text`."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, text)
    pdf.add_page()
    pdf.image(text_image(scanned_text, size=(1240, 300)), x=10, y=10, w=190)
    return bytes(pdf.output())


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`x`height`: a decompression bomb's calling card."""
    data = bytearray(image_bytes(Image.new("L", (1, 1)), format="PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = crc.to_bytes(4, "big")
    return bytes(data)


def dense_pdf(*pages: str, font_size: float = 4) -> bytes:
    """One page per string, each line of it written in tiny type: a lot of text in few bytes."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=font_size)
    pdf.set_auto_page_break(False)
    for text in pages:
        pdf.add_page()
        for number, line in enumerate(text.splitlines(), start=1):
            pdf.text(5, number * font_size / 2.5, line)
    return bytes(pdf.output())


def blank_poster_pdf(pages: int) -> bytes:
    """`pages` empty pages of 200 × 200 inches (PDF's largest): nothing to read, a lot to render."""
    pdf = FPDF(unit="pt", format=(14400, 14400))
    for _ in range(pages):
        pdf.add_page()
    return bytes(pdf.output())
