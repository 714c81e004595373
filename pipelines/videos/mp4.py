"""The top-level box layout of an MP4 file, read without decoding anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def is_faststart(path: Path) -> bool:
    """True when `moov` (the index) comes before `mdat` (the media), so playback can stream."""
    with path.open("rb") as file:
        for box_type in _top_level_boxes(file):
            if box_type in (b"moov", b"mdat"):
                return box_type == b"moov"
    return False


def _top_level_boxes(file: BinaryIO) -> Iterator[bytes]:
    """Each top-level box type in order, seeking over the bodies."""
    while len(header := file.read(8)) == 8:
        size, box_type = int.from_bytes(header[:4], "big"), header[4:]
        yield box_type
        if size == 0:  # runs to the end of the file
            return
        header_size = 8
        if size == 1:  # a 64-bit size follows the type
            size, header_size = int.from_bytes(file.read(8), "big"), 16
        if size < header_size:
            return
        file.seek(size - header_size, 1)
