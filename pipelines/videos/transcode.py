"""Make a plan's renditions (H.264/AAC MP4, faststart) and thumbnail with concurrent ffmpegs.

Each output is one ffmpeg process; a semaphore bounds how many run on the host at once.
Outputs are written under a partial name and renamed when complete, so the caller only
ever sees whole files and a cancel or failure leaves no partial file behind. Finished
outputs are handed to `on_rendition_done` one by one, for the caller to upload and
checkpoint, and a resumed job passes their names in `done` to skip them.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.subprocesses import Finished
from pipelines.videos.demux import demuxer_of, input_args
from pipelines.videos.plan import Output, Rendition, RenditionPlan, Thumbnail
from pipelines.videos.tools import run_ffmpeg
from service.errors import JobError, PermanentError, TransientError

if TYPE_CHECKING:
    from service.config import Settings

ProgressCallback = Callable[[float], Awaitable[None] | None]
DoneCallback = Callable[[Output, Path], Awaitable[None] | None]

MAX_FPS = 60
THUMBNAIL_WINDOW_SECONDS = 4
THUMBNAIL_MAX_FRAMES = 100
THUMBNAIL_WEIGHT = 0.02
"""The thumbnail's share of the progress bar: one short decode next to full encodes."""

_FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1", "-y")


def transcode_slots(settings: Settings | None = None) -> asyncio.Semaphore:
    """The host's ffmpeg slots: create one per worker process and pass it to every call."""
    limit = settings.transcode_concurrency if settings else None
    return asyncio.Semaphore(limit or os.cpu_count() or 1)


async def transcode_all(
    source: Path,
    plan: RenditionPlan,
    out_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    on_rendition_done: DoneCallback | None = None,
    done: Collection[str] = frozenset(),
    slots: asyncio.Semaphore | None = None,
) -> dict[str, Path]:
    """Make every output of `plan` not named in `done`; returns {name: path} of those made.

    `on_progress(fraction)` only ever rises and reaches 1.0; both callbacks may be sync or
    async. The first failure cancels the other ffmpegs and is raised as it is (a `JobError`).
    """
    slots = slots or transcode_slots()
    progress = _OverallProgress(plan, done, on_progress)
    made: dict[str, Path] = {}

    async def make(output: Output) -> None:
        async with slots:
            path = await transcode(source, plan, output, out_dir, on_progress=progress.tracker(output))
        made[output.name] = path
        await _call(on_rendition_done, output, path)

    try:
        async with asyncio.TaskGroup() as group:
            for output in plan.outputs:
                if output.name not in done:
                    group.create_task(make(output))
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return made


async def transcode(
    source: Path, plan: RenditionPlan, output: Output, out_dir: Path, *, on_progress: ProgressCallback | None = None
) -> Path:
    """Make one output with one ffmpeg; the file appears under its final name only when whole."""
    final = out_dir / output.filename
    partial = final.with_name(f"{final.stem}.partial{final.suffix}")
    if isinstance(output, Rendition):
        args = _rendition_args(source, plan, output, partial)
        progress = _ProgressLines(plan.source.duration, on_progress)
    else:
        args = _thumbnail_args(source, plan, output, partial)
        progress = _ProgressLines(None, on_progress)
    try:
        finished = await run_ffmpeg(args, on_line=progress)
        if finished.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            raise _failure(source, output, finished)
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    return final


def _rendition_args(source: Path, plan: RenditionPlan, rendition: Rendition, path: Path) -> list[str]:
    info = plan.source
    kbps = rendition.video_kbps
    if rendition.audio_kbps is not None and info.audio_stream is not None:
        audio = ["-map", f"0:{info.audio_stream}", "-c:a", "aac", "-b:a", f"{rendition.audio_kbps}k", "-ac", "2"]
    else:
        audio = ["-an"]
    return [
        *_FFMPEG,
        *_source_args(source, plan),
        "-map", f"0:{info.video_stream}", *audio, "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        # ffmpeg has already turned the picture upright (autorotate), so scale to display size.
        "-vf", f"scale={rendition.width}:{rendition.height},setsar=1",
        "-fpsmax", str(MAX_FPS),
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-crf", "23", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
        "-movflags", "+faststart",
        "-f", "mp4", str(path),
    ]  # fmt: skip


def _thumbnail_args(source: Path, plan: RenditionPlan, thumbnail: Thumbnail, path: Path) -> list[str]:
    """The `thumbnail` filter keeps the frame closest to the window's average: not a black one."""
    frames = max(2, min(THUMBNAIL_MAX_FRAMES, round(plan.source.fps * THUMBNAIL_WINDOW_SECONDS)))
    return [
        *_FFMPEG,
        "-ss", f"{thumbnail.seek:.3f}", *_source_args(source, plan),
        "-map", f"0:{plan.source.video_stream}",
        "-vf", f"scale={thumbnail.width}:{thumbnail.height},setsar=1,thumbnail=n={frames}",
        "-frames:v", "1", "-q:v", "3", "-update", "1",
        "-f", "image2", str(path),
    ]  # fmt: skip


def _source_args(source: Path, plan: RenditionPlan) -> list[str]:
    """The source opened as the container its probe found, and only as that (see `demux`)."""
    return input_args(source, demuxer_of(plan.source.container))


def _failure(source: Path, output: Output, finished: Finished) -> JobError:
    detail = finished.explain(source)
    if finished.returncode < 0:
        return TransientError(
            f"ffmpeg making {output.name} was killed by signal {-finished.returncode}", type="transcode_interrupted"
        )
    if "No space left on device" in detail:
        return TransientError(f"the worker ran out of disk making {output.name}", type="disk_full")
    return PermanentError(f"ffmpeg could not make {output.name}: {detail}", type="transcode_failed")


class _ProgressLines:
    """Turns ffmpeg's `-progress` lines into fractions of `duration` (None: only the end counts)."""

    def __init__(self, duration: float | None, report: ProgressCallback | None) -> None:
        self._duration = duration
        self._report = report

    def __call__(self, line: str) -> Awaitable[None] | None:
        if self._report is None:
            return None
        key, _, value = line.partition("=")
        if key == "progress" and value == "end":
            return self._report(1.0)
        if key == "out_time_us" and self._duration and value.isdecimal():
            return self._report(min(1.0, int(value) / 1e6 / self._duration))
        return None


class _OverallProgress:
    """Combines outputs' fractions, weighted by pixels encoded, into one rising number."""

    def __init__(self, plan: RenditionPlan, done: Collection[str], report: ProgressCallback | None) -> None:
        pixels = {rendition.name: float(rendition.width * rendition.height) for rendition in plan.renditions}
        thumbnail_weight = THUMBNAIL_WEIGHT * sum(pixels.values()) or 1.0
        self._weights = {**pixels, plan.thumbnail.name: thumbnail_weight}
        self._fractions = {name: 1.0 if name in done else 0.0 for name in self._weights}
        self._reported = 0.0
        self._report = report

    def tracker(self, output: Output) -> ProgressCallback:
        return lambda fraction: self._update(output.name, fraction)

    def _update(self, name: str, fraction: float) -> Awaitable[None] | None:
        self._fractions[name] = max(self._fractions[name], fraction)
        if all(value == 1.0 for value in self._fractions.values()):
            overall = 1.0
        else:
            weighted = sum(self._weights[key] * value for key, value in self._fractions.items())
            overall = min(0.999, weighted / sum(self._weights.values()))
        if self._report is None or overall <= self._reported:
            return None
        self._reported = overall
        return self._report(overall)


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is not None and inspect.isawaitable(result := callback(*args)):
        await result
