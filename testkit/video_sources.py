"""Small real video files made with ffmpeg's lavfi sources, once per test session.

Import the `video_sources` fixture into a test module. Files are cached by name under the
session's base temp dir, so several modules share one copy of each.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# One second of black, then two of test pattern: a first frame that makes a bad thumbnail.
BLACK_THEN_PATTERN = (
    "color=c=black:s=640x360:r=25:d=1[black];testsrc=s=640x360:r=25:d=2[pattern];[black][pattern]concat=n=2[out0]"
)
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


@dataclass(frozen=True)
class VideoSources:
    landscape: Path  # 640x360, 3 s, 25 fps, H.264 + AAC, moov at the end
    rotated: Path  # the same, with a 90° display rotation: shown as 360x640
    silent_480p: Path  # 854x480, 2 s, no audio
    long: Path  # the landscape source looped to 10 minutes
    audio_only: Path
    truncated: Path
    random_bytes: Path
    empty: Path
    mov: Path
    mkv: Path
    webm: Path


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def _paths(directory: Path) -> VideoSources:
    return VideoSources(**{name: directory / filename for name, filename in _FILENAMES.items()})


def _make(sources: VideoSources) -> None:
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        BLACK_THEN_PATTERN,
        *sine,
        "-t",
        "3",
        *H264,
        "-c:a",
        "aac",
        "-shortest",
        str(sources.landscape),
    )
    _ffmpeg("-i", str(sources.landscape), "-c", "copy", "-metadata:s:v", "rotate=90", str(sources.rotated))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=854x480:r=25:d=2", *H264, str(sources.silent_480p))
    _ffmpeg("-stream_loop", "199", "-i", str(sources.landscape), "-c", "copy", str(sources.long))
    _ffmpeg(*sine, "-t", "1", "-c:a", "aac", str(sources.audio_only))
    _ffmpeg("-i", str(sources.landscape), "-c", "copy", str(sources.mov))
    _ffmpeg("-i", str(sources.landscape), "-c", "copy", str(sources.mkv))
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=s=160x90:r=10:d=1", "-c:v", "libvpx", "-deadline", "realtime", str(sources.webm)
    )
    whole = sources.landscape.read_bytes()
    sources.truncated.write_bytes(whole[: len(whole) // 2])
    sources.random_bytes.write_bytes(random.Random(0).randbytes(64 * 1024))
    sources.empty.write_bytes(b"")


_FILENAMES = {
    "landscape": "landscape.mp4",
    "rotated": "rotated.mp4",
    "silent_480p": "silent_480p.mp4",
    "long": "long.mp4",
    "audio_only": "audio_only.mp4",
    "truncated": "truncated.mp4",
    "random_bytes": "random_bytes.mp4",
    "empty": "empty.mp4",
    "mov": "landscape.mov",
    "mkv": "landscape.mkv",
    "webm": "pattern.webm",
}


@pytest.fixture(scope="session")
def video_sources(tmp_path_factory: pytest.TempPathFactory) -> VideoSources:
    directory = tmp_path_factory.getbasetemp() / "video_sources"
    sources = _paths(directory)
    if not (directory / "complete").exists():
        directory.mkdir(exist_ok=True)
        _make(sources)
        (directory / "complete").touch()
    return sources
