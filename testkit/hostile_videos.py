"""Hostile "videos" (issue 18): manifests and scripts that make an ffmpeg left to guess its
demuxer read other files of the host, hidden behind each accepted container's first bytes.

The files they point at are pure magenta, made by the test, so any output that shows that
colour proves a read of the host's files. `naked_ffmpeg_sees` lets a test check first
that a trick really works on an unrestricted ffmpeg, so a refusal cannot pass vacuously.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

MAGENTA = (255, 0, 255)
_SIDE = 64


@dataclass(frozen=True)
class Targets:
    """Files of the "host" that no tenant may ever see."""

    stream: Path  # a second of magenta, MPEG-TS
    frames: str  # an image2 pattern of magenta PNGs, e.g. /tmp/…/frame%03d.png


def make_targets(directory: Path) -> Targets:
    directory.mkdir(parents=True, exist_ok=True)
    colour = f"color=c=magenta:s={_SIDE}x{_SIDE}:r=10:d=1"
    stream, frames = directory / "secret.ts", str(directory / "frame%03d.png")
    _ffmpeg("-f", "lavfi", "-i", colour, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(stream))
    _ffmpeg("-f", "lavfi", "-i", colour, "-frames:v", "3", frames)
    return Targets(stream, frames)


def tricks(targets: Targets) -> dict[str, bytes]:
    """Each family of demuxer that opens other files, pointed at the targets."""
    return {
        "dash": (
            '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"'
            ' type="static" mediaPresentationDuration="PT1S" minBufferTime="PT1S"><Period>'
            '<AdaptationSet mimeType="video/mp2t"><Representation id="1" bandwidth="1000" width="64" height="64">'
            f"<BaseURL>file://{targets.stream}</BaseURL></Representation></AdaptationSet></Period></MPD>\n"
        ).encode(),
        "hls": (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:1.0,\nfile://{targets.stream}\n#EXT-X-ENDLIST\n"
        ).encode(),
        # The concat demuxer's safe mode takes only plain relative names: siblings of the script.
        "ffconcat": f"ffconcat version 1.0\nfile '{targets.stream.name}'\n".encode(),
        "image_sequence": f"ffconcat version 1.0\nfile '{Path(targets.frames).name}'\n".encode(),
    }


def _box(box_type: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + box_type + body


def _ebml_header(doctype: bytes) -> bytes:
    body = b"\x42\x86\x81\x01" + b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body


def _void(body: bytes) -> bytes:
    """An EBML Void element (0xEC) holding `body`, its size as an 8-byte number."""
    return b"\xec\x01" + len(body).to_bytes(7, "big") + body


_FTYP = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2")
_UNKNOWN_SIZE_SEGMENT = b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"

WRAPPERS = {
    # The original hole: text that reads as a QuickTime `free` atom, then the trick.
    "mov_free_comment": lambda trick: b"<!--free-->" + trick,
    "mov_mdat_comment": lambda trick: b"<!--mdat-->" + trick,
    "mp4_ftyp": lambda trick: _FTYP + trick,
    "mkv_segment": lambda trick: _ebml_header(b"matroska") + _UNKNOWN_SIZE_SEGMENT + trick,
    # Structurally sound boxes or EBML: they pass the sniffer, and the worker must still refuse.
    "mp4_mdat": lambda trick: _FTYP + _box(b"mdat", trick),
    "mov_wide_mdat": lambda trick: _box(b"wide", b"") + _box(b"mdat", trick),
    "webm_void": lambda trick: _ebml_header(b"webm") + _UNKNOWN_SIZE_SEGMENT + _void(trick),
    "mkv_void": lambda trick: _ebml_header(b"matroska") + _UNKNOWN_SIZE_SEGMENT + _void(trick),
}
"""How each accepted container's first bytes can front a trick."""
SOUND_WRAPPERS = frozenset({"mp4_mdat", "mov_wide_mdat", "webm_void", "mkv_void"})
"""The wrappers whose structure holds together: only these get past the API's sniffing."""


def hostile_uploads(targets: Targets) -> dict[str, bytes]:
    """Every trick behind every wrapper, named `wrapper/trick`."""
    return {f"{wrapper}/{name}": wrap(trick) for wrapper, wrap in WRAPPERS.items()
            for name, trick in tricks(targets).items()}  # fmt: skip


def naked_ffmpeg_sees(path: Path) -> tuple[int, int, int] | None:
    """The colour of the first frame an unrestricted ffmpeg (guessing the demuxer, every
    protocol allowed) decodes from `path`, or None if it decodes nothing."""
    return first_frame_colour(["-i", str(path)])


def first_frame_colour(input_args: list[str]) -> tuple[int, int, int] | None:
    """The mean colour of the first decoded frame, scaled down to one pixel."""
    finished = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *input_args, "-frames:v", "1", "-vf", "scale=1:1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    if finished.returncode != 0 or len(finished.stdout) < 3:
        return None
    return tuple(finished.stdout[:3])


def is_magenta(colour: tuple[int, int, int] | None) -> bool:
    return colour is not None and all(abs(a - b) <= 40 for a, b in zip(colour, MAGENTA, strict=True))


def magenta_outputs(root: Path) -> list[Path]:
    """Every file under `root` but the uploads (named `original`) whose picture is magenta:
    outputs made from a file of the host."""
    return [path for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != "original" and is_magenta(naked_ffmpeg_sees(path))]  # fmt: skip


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)
