"""What a source video is (ffprobe), and whether it is sane enough to spend CPU on.

Everything downstream plans from `VideoInfo`, so rotation and non-square pixels are
resolved here into the dimensions a viewer actually sees.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.videos.demux import FORMAT_NAMES, demuxer_for, input_args
from pipelines.videos.mp4 import is_faststart
from pipelines.videos.tools import run_ffmpeg
from service.errors import PermanentError
from service.storage.sniffing import SNIFF_BYTES, sniff_video

if TYPE_CHECKING:
    from service.config import Settings

PROBE_TIMEOUT_SECONDS = 30.0
_FFPROBE = ("ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams")
_OUTPUT_DEMUXERS = {".mp4": "mov", ".jpg": "jpeg_pipe"}


@dataclass(frozen=True)
class VideoInfo:
    container: str
    """ffprobe's format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"."""
    duration: float
    video_codec: str
    video_stream: int
    """The index of the video stream to transcode (cover art is never chosen)."""
    width: int
    height: int
    """Stored (coded) dimensions; see `display_width`/`display_height` for what is shown."""
    rotation: int
    """Quarter turns the player applies, as ffprobe reports them: 0, 90, 180 or 270."""
    sample_aspect_ratio: Fraction
    fps: float
    audio_codec: str | None
    audio_stream: int | None
    stream_count: int

    @property
    def has_audio(self) -> bool:
        return self.audio_stream is not None

    @property
    def display_width(self) -> int:
        return self._display[0]

    @property
    def display_height(self) -> int:
        return self._display[1]

    @property
    def _display(self) -> tuple[int, int]:
        width = round(self.width * self.sample_aspect_ratio)
        return (self.height, width) if self.rotation in (90, 270) else (width, self.height)


async def probe(path: Path, media_type: str | None, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> VideoInfo:
    """Probe a source as the container the API sniffed (`media_type`, e.g. "video/mp4"), or
    raise a `PermanentError` saying precisely why it cannot be used."""
    demuxer = demuxer_for(media_type)
    report = await _ffprobe(path, demuxer, timeout)
    container = report.get("format", {}).get("format_name")
    if container != FORMAT_NAMES[demuxer]:
        raise PermanentError(
            f"the file reads as {container!r}, not as a {media_type} video", type="unsupported_container"
        )
    streams = report.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)), None)
    if video is None:
        raise PermanentError("the file has no video stream", type="no_video_stream")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return VideoInfo(
        container=container,
        duration=_duration(report, video),
        video_codec=video.get("codec_name", "unknown"),
        video_stream=video["index"],
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        rotation=_rotation(video),
        sample_aspect_ratio=_ratio(video.get("sample_aspect_ratio"), ":") or Fraction(1),
        fps=float(_ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate")) or 0),
        audio_codec=audio.get("codec_name") if audio else None,
        audio_stream=audio["index"] if audio else None,
        stream_count=len(streams),
    )


def check_limits(info: VideoInfo, settings: Settings) -> None:
    """Refuse sources that are broken or absurd before any CPU is spent transcoding them."""
    if info.width <= 0 or info.height <= 0 or info.duration <= 0:
        raise PermanentError(
            f"the video reports {info.width}x{info.height} pixels and {info.duration:g} s", type="corrupt_video"
        )
    if info.duration > settings.video_max_duration:
        raise PermanentError(
            f"the video lasts {info.duration:.0f} s; the limit is {settings.video_max_duration:.0f} s",
            type="video_too_long",
        )
    if max(info.width, info.height) > settings.video_max_dimension:
        raise PermanentError(
            f"the video is {info.width}x{info.height}; the limit is {settings.video_max_dimension} pixels a side",
            type="video_too_large",
        )
    if info.fps > settings.video_max_fps:
        raise PermanentError(
            f"the video runs at {info.fps:g} frames/s; the limit is {settings.video_max_fps:g}",
            type="frame_rate_too_high",
        )
    if info.stream_count > settings.video_max_streams:
        raise PermanentError(
            f"the file has {info.stream_count} streams; the limit is {settings.video_max_streams}",
            type="too_many_streams",
        )


@dataclass(frozen=True)
class OutputInfo:
    """A finished output as a client will see it (the job's `result`)."""

    width: int
    height: int
    duration: float | None
    bytes: int
    video_codec: str
    audio_codec: str | None
    faststart: bool | None
    """Whether `moov` precedes `mdat` so playback starts before the download ends (MP4 only)."""


async def measure(path: Path, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> OutputInfo:
    """Measure a rendition or thumbnail we produced, to report and to verify it."""
    report = await _ffprobe(path, _OUTPUT_DEMUXERS[path.suffix], timeout)
    streams = report.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None:
        raise PermanentError(f"{path.name} has no picture", type="transcode_failed")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    is_mp4 = path.suffix == ".mp4"
    size = (await asyncio.to_thread(path.stat)).st_size
    return OutputInfo(
        width=int(video["width"]),
        height=int(video["height"]),
        duration=_duration(report, video) if is_mp4 else None,
        bytes=size,
        video_codec=video.get("codec_name", "unknown"),
        audio_codec=audio.get("codec_name") if audio else None,
        faststart=await asyncio.to_thread(is_faststart, path) if is_mp4 else None,
    )


async def _ffprobe(path: Path, demuxer: str, timeout: float) -> dict[str, Any]:
    head, size = await asyncio.to_thread(_read_head, path)
    if not head:
        raise PermanentError("the file is empty", type="not_a_video")
    try:
        async with asyncio.timeout(timeout):
            finished = await run_ffmpeg([*_FFPROBE, *input_args(path, demuxer)])
    except TimeoutError:
        raise PermanentError(f"ffprobe could not read the file within {timeout:g} s", type="corrupt_video") from None
    if finished.returncode != 0:
        # A recognised container that ffprobe cannot read is damaged; anything else is not a video.
        if sniff_video(head, size):
            raise PermanentError(f"the video is damaged: {finished.explain(path)}", type="corrupt_video")
        raise PermanentError("the file is not a video this service can read", type="not_a_video")
    try:
        return json.loads(finished.stdout)
    except ValueError:
        raise PermanentError("ffprobe described the file unintelligibly", type="corrupt_video") from None


def _read_head(path: Path) -> tuple[bytes, int]:
    with path.open("rb") as file:
        return file.read(SNIFF_BYTES), os.fstat(file.fileno()).st_size


def _is_cover_art(stream: dict[str, Any]) -> bool:
    return bool(stream.get("disposition", {}).get("attached_pic"))


def _duration(report: dict[str, Any], video: dict[str, Any]) -> float:
    candidates: tuple[Any, ...] = (report.get("format", {}).get("duration"), video.get("duration"))
    for value in candidates:
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    raise PermanentError("the video's duration cannot be determined", type="corrupt_video")


def _rotation(video: dict[str, Any]) -> int:
    """Display-matrix side data wins over the legacy `rotate` tag; snapped to quarter turns."""
    degrees: Any = next(
        (side["rotation"] for side in video.get("side_data_list", []) if "rotation" in side),
        video.get("tags", {}).get("rotate", 0),
    )
    try:
        return round(float(degrees) / 90) * 90 % 360
    except (TypeError, ValueError):
        return 0


def _ratio(text: str | None, separator: str = "/") -> Fraction | None:
    """ffprobe's "30000/1001" or "4:3"; None for missing or "0/0" (unknown)."""
    numerator, _, denominator = (text or "").partition(separator)
    try:
        value = Fraction(int(numerator), int(denominator))
    except (ValueError, ZeroDivisionError):
        return None
    return value or None
