"""Which video container a file is, judged from its first bytes (never its name or header).

The API answers 415 when this returns None, so it must recognise every container we
transcode (MP4, QuickTime, WebM, Matroska) and nothing that merely shares a wrapper:
ISO-BMFF audio (M4A) and images (HEIC, AVIF) carry an `ftyp` box too.
"""

from __future__ import annotations

SNIFF_BYTES = 4096
"""How many leading bytes callers should pass: enough for any `ftyp` or EBML header."""

MP4 = "video/mp4"
QUICKTIME = "video/quicktime"
WEBM = "video/webm"
MATROSKA = "video/x-matroska"

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE = 0x4282
_DOCTYPES = {b"webm": WEBM, b"matroska": MATROSKA}

_NOT_VIDEO_BRANDS = {
    b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ",  # audio
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis",  # images
    b"crx ", b"jp2 ", b"jpx ",  # camera raw, JPEG 2000
}
# QuickTime files older than `ftyp` start straight with one of these atoms.
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def sniff_video(first_bytes: bytes) -> str | None:
    """The MIME type of the video container these bytes start, or None if it is not one."""
    if first_bytes.startswith(_EBML_MAGIC):
        return _sniff_ebml(first_bytes)
    box_type = first_bytes[4:8]
    if box_type == b"ftyp":
        return _sniff_ftyp(first_bytes)
    size = int.from_bytes(first_bytes[:4], "big")
    if box_type in _QUICKTIME_ATOMS and (size in (0, 1) or size >= 8):  # 0: to EOF, 1: 64-bit size
        return QUICKTIME
    return None


def _sniff_ftyp(data: bytes) -> str | None:
    """Decide by the major brand; brands we do not know are MP4 variants (3GP, DASH, F4V…)."""
    major = data[8:12]
    if major == b"qt  ":
        return QUICKTIME
    if len(major) < 4 or major in _NOT_VIDEO_BRANDS or not major.isascii():
        return None
    return MP4


def _sniff_ebml(data: bytes) -> str | None:
    """Walk the EBML header's children for DocType ("webm" or "matroska")."""
    position = len(_EBML_MAGIC)
    header_size, position = _read_vint(data, position)
    if header_size is None:
        return None
    end = min(position + header_size, len(data))
    while position < end:
        element_id, position = _read_vint(data, position, keep_marker=True)
        size, position = _read_vint(data, position)
        if element_id is None or size is None:
            return None
        if element_id == _EBML_DOCTYPE:
            return _DOCTYPES.get(data[position : position + size].rstrip(b"\x00"))
        position += size
    return None


def _read_vint(data: bytes, position: int, *, keep_marker: bool = False) -> tuple[int | None, int]:
    """An EBML variable-length integer: the leading zero bits of its first byte give its length."""
    if position >= len(data) or data[position] == 0:
        return None, position
    first = data[position]
    length = 9 - first.bit_length()
    if position + length > len(data):
        return None, position
    value = int.from_bytes(data[position : position + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, position + length
