"""What an upload really is, judged from its first bytes, never from its name or header."""

from __future__ import annotations

from service.storage.sniffing.video import SNIFF_BYTES, sniff_video

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"

DOCUMENT_TYPES = frozenset({PDF, PNG, JPEG, TIFF})
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-matroska"})

_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
    (b"II+\x00", TIFF),  # BigTIFF
    (b"MM\x00+", TIFF),
)

__all__ = [
    "DOCUMENT_TYPES",
    "JPEG",
    "PDF",
    "PNG",
    "SNIFF_BYTES",
    "TIFF",
    "VIDEO_TYPES",
    "sniff",
    "sniff_document",
    "sniff_video",
]


def sniff_document(head: bytes) -> str | None:
    """PDF, PNG, JPEG or TIFF (BigTIFF too), or None if the bytes are none of them."""
    for signature, mime in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return mime
    if head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x00").startswith(b"%PDF-"):
        return PDF  # some generators emit a BOM or blank lines before the header
    return None


def sniff(head: bytes, size: int | None = None) -> str | None:
    """The MIME type of any file Conveyor accepts, or None; `size` is the whole file's
    length once known (a video's boxes must fit it)."""
    return sniff_document(head) or sniff_video(head, size)
