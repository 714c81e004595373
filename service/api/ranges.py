"""Byte ranges (RFC 9110 §14): what lets a player seek in a rendition the API serves, or a
download resume, without fetching the whole file.

One range per request, which is what players and resumers ask for. Anything else (several
ranges, another unit, a malformed or backwards range, an `If-Range`: the API sends no
validators, so it never matches) gets the whole file, as the RFC allows. A range that
starts past the end is `416`, saying the size.
"""

from __future__ import annotations

import re

from service.api.problems import Problem

RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions, inclusive, a `Range` header asks of `size` bytes;
    None to send them all."""
    match = RANGE.fullmatch(header.strip()) if header else None
    if match is None or not (match[1] or match[2]):
        return None
    if match[1]:
        first = int(match[1])
        if match[2] and int(match[2]) < first:
            return None
        if first >= size:
            raise unsatisfiable(size)
        last = min(int(match[2]), size - 1) if match[2] else size - 1
        return first, last
    suffix = int(match[2])
    if suffix == 0 or size == 0:
        raise unsatisfiable(size)
    return max(size - suffix, 0), size - 1


def unsatisfiable(size: int) -> Problem:
    return Problem(
        416, f"the range asked for is not within the file's {size} bytes", headers={"Content-Range": f"bytes */{size}"}
    )
