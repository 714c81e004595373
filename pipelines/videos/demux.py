"""How ffmpeg and ffprobe may open a source: with the demuxer the API's sniffing chose, and
nothing but that one local file.

Left to guess, ffmpeg picks a demuxer from the content, and some of them open other URLs:
DASH and HLS manifests, ffconcat scripts, image sequences, SDP, IMF playlists. A tenant's
"video" could then make the worker read its own files into the tenant's renditions. So the
demuxer is always named (`-f`), only the `file` protocol is allowed, and the one demuxer
we use that can follow references (mov's data references, `dref`) is told not to. The
concat demuxer's `-safe` does not apply: it can never be chosen.
"""

from __future__ import annotations

from pathlib import Path

from service.errors import PermanentError
from service.storage.sniffing.video import MATROSKA, MP4, QUICKTIME, WEBM

DEMUXERS = {MP4: "mov", QUICKTIME: "mov", WEBM: "matroska", MATROSKA: "matroska"}
"""The ffmpeg demuxer for each container the API accepts."""

FORMAT_NAMES = {"mov": "mov,mp4,m4a,3gp,3g2,mj2", "matroska": "matroska,webm"}
"""What ffprobe reports as `format_name` for each of those demuxers."""

_DEMUXER_OPTIONS = {
    "mov": ("-enable_drefs", "0", "-use_absolute_path", "0"),
    "matroska": (),
    "jpeg_pipe": (),  # our own thumbnails, when measured
}


def demuxer_for(media_type: str | None) -> str:
    """The demuxer for the container type the upload was sniffed as."""
    try:
        return DEMUXERS[media_type or ""]
    except KeyError:
        raise PermanentError(
            f"the upload was not accepted as a video container ({media_type})", type="unsupported_container"
        ) from None


def demuxer_of(format_name: str) -> str:
    """The demuxer that reported `format_name` (a probed source's container)."""
    for demuxer, name in FORMAT_NAMES.items():
        if name == format_name:
            return demuxer
    raise PermanentError(f"the container {format_name!r} is not one this service reads", type="unsupported_container")


def input_args(path: Path, demuxer: str) -> list[str]:
    """The options opening `path` as ffmpeg's or ffprobe's input, ending with `-i path`."""
    return ["-f", demuxer, "-protocol_whitelist", "file", *_DEMUXER_OPTIONS[demuxer],
            "-i", str(path.absolute())]  # absolute: never read as an option or a URL  # fmt: skip
