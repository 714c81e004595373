"""Which endpoint takes a file, from its first bytes: documents (PDF, PNG, JPEG, TIFF) or
videos (MP4, MOV, WebM, MKV). A quick look at magic numbers to pick the URL; the API
judges the bytes again, fully, and answers 415 for what it does not accept."""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 64

DOCUMENTS = "/v1/documents"
VIDEOS = "/v1/videos"

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"II+\x00", "image/tiff"),
    (b"MM\x00+", "image/tiff"),
)
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_EBML = b"\x1a\x45\xdf\xa3"


def _document(head: bytes) -> str | None:
    for signature, mime in _SIGNATURES:
        if head.startswith(signature):
            return mime
    if head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x00").startswith(b"%PDF-"):
        return "application/pdf"
    return None


def _video(head: bytes) -> str | None:
    box = head[4:8]
    if box == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if box in _QUICKTIME_ATOMS:
        return "video/quicktime"
    if head.startswith(_EBML):
        return "video/webm" if b"webm" in head else "video/x-matroska"
    return None


def upload_target(path: Path) -> tuple[str, str] | None:
    """(API path, MIME type) for the file, or None if it is neither a document nor a video."""
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if mime := _document(head):
        return DOCUMENTS, mime
    if mime := _video(head):
        return VIDEOS, mime
    return None
