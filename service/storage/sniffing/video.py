"""Which video container a file is, judged from its structure (never its name or header).

The API answers 415 when this returns None, so it must recognise every container we
transcode (MP4, QuickTime, WebM, Matroska) and nothing that merely shares a wrapper:
ISO-BMFF audio (M4A) and images (HEIC, AVIF) carry an `ftyp` box too. Four magic bytes
are not enough: `<!--free-->` reads as a QuickTime atom, and what follows it may be a DASH
manifest that makes ffmpeg read the worker's own files (see SECURITY.md). So the boxes or
the EBML header must hold together: known types, sizes that fit what they claim to hold.

Only the first `SNIFF_BYTES` are read. `size` is the whole file's length when known (the
upload has ended); without it, a box running past the sniffed bytes cannot be judged yet.
"""

from __future__ import annotations

SNIFF_BYTES = 4096
"""How many leading bytes are judged: enough for any `ftyp` or EBML header."""

MP4 = "video/mp4"
QUICKTIME = "video/quicktime"
WEBM = "video/webm"
MATROSKA = "video/x-matroska"

_NOT_VIDEO_BRANDS = {
    b"M4A ",
    b"M4B ",
    b"M4P ",
    b"F4A ",
    b"F4B ",  # audio
    b"heic",
    b"heix",
    b"heim",
    b"heis",
    b"hevc",
    b"hevx",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",  # images
    b"crx ",
    b"jp2 ",
    b"jpx ",  # camera raw, JPEG 2000
}
_TOP_LEVEL_BOXES = {
    b"ftyp",
    b"moov",
    b"mdat",
    b"free",
    b"skip",
    b"wide",
    b"pnot",
    b"PICT",
    b"uuid",
    b"meta",
    b"udta",
    b"moof",
    b"mfra",
    b"sidx",
    b"ssix",
    b"styp",
    b"prft",
    b"emsg",
    b"pdin",
    b"meco",
}
_MEDIA_BOXES = {b"moov", b"mdat", b"moof"}
"""The only boxes a file may end inside of (an upload cut short is damaged, not hostile)."""
_QUICKTIME_FIRST = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
"""QuickTime files older than `ftyp` start straight with one of these atoms."""

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE = 0x4282
_EBML_HEADER_ELEMENTS = {
    0x4286,
    0x42F7,
    0x42F2,
    0x42F3,  # EBML version, read version, max ID length, max size length
    _EBML_DOCTYPE,
    0x4287,
    0x4285,
    0x4281,  # DocType, its versions, DocTypeExtension
    0xEC,
    0xBF,  # Void, CRC-32
}
_MATROSKA_SEGMENT = 0x18538067
_MATROSKA_TOP_LEVEL = {
    0x114D9B74,
    0x1549A966,
    0x1654AE6B,
    0x1F43B675,  # SeekHead, Info, Tracks, Cluster
    0x1C53BB6B,
    0x1043A770,
    0x1254C367,
    0x1941A469,  # Cues, Chapters, Tags, Attachments
    0xEC,
    0xBF,  # Void, CRC-32
}
_LONGEST_ELEMENT_HEADER = 12
"""A 4-byte ID and an 8-byte size: fewer bytes left than this may just be cut off."""
_DOCTYPES = {b"webm": WEBM, b"matroska": MATROSKA}


def sniff_video(first_bytes: bytes, size: int | None = None) -> str | None:
    """The MIME type of the video container these bytes start, or None if it is not one."""
    head = first_bytes[:SNIFF_BYTES]
    whole = size is not None and size <= len(head)
    if head.startswith(_EBML_MAGIC):
        return _sniff_ebml(head, whole)
    boxes = _top_level_boxes(head, size)
    if not boxes or b"ftyp" in (box_type for box_type, _ in boxes[1:]):
        return None
    if whole and not _MEDIA_BOXES.intersection(box_type for box_type, _ in boxes):
        return None  # every box was seen and none holds media
    first_type, first_end = boxes[0]
    if first_type == b"ftyp":
        return _sniff_ftyp(head[:first_end]) if first_end is not None and first_end <= len(head) else None
    if first_type not in _QUICKTIME_FIRST or not _MEDIA_BOXES.intersection(box_type for box_type, _ in boxes):
        return None  # without `ftyp`, the media must start within the sniffed bytes
    if size is not None and any(end is not None and end > size for _, end in boxes):
        return None  # nor may it run past the end: only a whole `ftyp` earns that leniency
    return QUICKTIME


def _top_level_boxes(head: bytes, size: int | None) -> list[tuple[bytes, int | None]] | None:
    """(type, end) of each box that starts in `head` (end None: to the end of the file), or
    None if one is malformed: an unknown type, a size smaller than its header, a box other
    than media running past the end of the file, or stray bytes after the last box."""
    boxes: list[tuple[bytes, int | None]] = []
    position = 0
    while position + 8 <= len(head):
        declared, box_type = int.from_bytes(head[position : position + 4], "big"), head[position + 4 : position + 8]
        if box_type not in _TOP_LEVEL_BOXES:
            return None
        header = 8
        if declared == 1:  # a 64-bit size follows the type
            if position + 16 > len(head):
                break
            declared, header = int.from_bytes(head[position + 8 : position + 16], "big"), 16
        if declared == 0 and box_type in _MEDIA_BOXES:  # runs to the end of the file
            boxes.append((box_type, None))
            return boxes
        end = position + declared
        if declared < header or (size is not None and end > size and box_type not in _MEDIA_BOXES):
            return None
        boxes.append((box_type, end))
        position = end
    if size is not None and position < size <= len(head):
        return None  # fewer than 8 bytes left at the end of the file: not a box
    return boxes


def _sniff_ftyp(ftyp: bytes) -> str | None:
    """Decide by the major brand; brands we do not know are MP4 variants (3GP, DASH, F4V…)."""
    if len(ftyp) < 16 or (len(ftyp) - 16) % 4:  # major brand, minor version, compatible brands
        return None
    major = ftyp[8:12]
    if major == b"qt  ":
        return QUICKTIME
    if major in _NOT_VIDEO_BRANDS or not all(0x20 <= byte < 0x7F for byte in major):
        return None
    return MP4


def _sniff_ebml(head: bytes, whole: bool) -> str | None:
    doctype, position = _ebml_header(head)
    if doctype not in _DOCTYPES or not _segment_is_matroska(head, position, whole):
        return None
    return _DOCTYPES[doctype]


def _ebml_header(head: bytes) -> tuple[bytes | None, int]:
    """The DocType of a whole EBML header made only of header elements that exactly fill
    it, and where the header ends; (None, 0) if it is not one."""
    header_size, position = _read_vint(head, len(_EBML_MAGIC))
    if header_size is None or position + header_size > len(head):
        return None, 0
    end = position + header_size
    doctype = None
    while position < end:
        element_id, position = _read_vint(head, position, keep_marker=True)
        size, position = _read_vint(head, position)
        if element_id not in _EBML_HEADER_ELEMENTS or size is None or position + size > end:
            return None, 0
        if element_id == _EBML_DOCTYPE:
            doctype = head[position : position + size].rstrip(b"\x00")
        position += size
    return doctype, end


def _segment_is_matroska(head: bytes, position: int, whole: bool) -> bool:
    """A Segment follows the header, and the elements it starts with are Matroska's top-level
    ones (SeekHead, Info, Tracks, Cluster…), as far as the sniffed bytes show them."""
    expected = {_MATROSKA_SEGMENT}
    while position < len(head):
        element_id, after_id = _read_vint(head, position, keep_marker=True)
        size, body = _read_vint(head, after_id)
        if element_id is None or size is None:  # malformed, or cut off by the sniffed bytes
            return not whole and position + _LONGEST_ELEMENT_HEADER > len(head)
        if element_id not in expected:
            return False
        if element_id == _MATROSKA_SEGMENT:
            expected, position = _MATROSKA_TOP_LEVEL, body
        elif size == (1 << 7 * (body - after_id)) - 1:  # unknown size (a live Cluster): it runs on
            return True
        else:
            position = body + size
    return expected is _MATROSKA_TOP_LEVEL or not whole


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
