import asyncio
import itertools
import shutil
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageStat

from pipelines.videos import measure, parse_renditions, plan_renditions, probe, transcode_all
from service.errors import PermanentError
from service.storage.sniffing.video import MP4
from testkit.processes import tool_children
from testkit.video_sources import VideoSources, video_sources  # noqa: F401

pytestmark = pytest.mark.integration


class Recorder:
    """Collects what transcode_all reports, checking each finished file as it is handed over."""

    def __init__(self) -> None:
        self.progress: list[float] = []
        self.finished: dict[str, Path] = {}

    def on_progress(self, fraction: float) -> None:
        self.progress.append(fraction)

    async def on_rendition_done(self, output, path: Path) -> None:
        assert path.is_file() and path.name == output.filename
        self.finished[output.name] = path


async def transcode(source: Path, renditions: str, out_dir: Path, **options):
    plan = plan_renditions(await probe(source, MP4), parse_renditions(renditions))
    recorder = Recorder()
    made = await transcode_all(
        source, plan, out_dir, on_progress=recorder.on_progress, on_rendition_done=recorder.on_rendition_done, **options
    )
    assert made == recorder.finished
    return plan, recorder


async def check_rendition(path: Path, size: tuple[int, int], duration: float, *, audio: bool) -> None:
    measured = await measure(path)
    assert (measured.width, measured.height) == size
    assert measured.video_codec == "h264"
    assert measured.audio_codec == ("aac" if audio else None)
    assert measured.duration == pytest.approx(duration, abs=0.2)
    assert measured.faststart is True
    assert measured.bytes == path.stat().st_size > 0


def check_thumbnail(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == size
        brightness = ImageStat.Stat(image.convert("L")).mean[0]
    assert brightness > 40, "the thumbnail is a black frame"


def check_progress(progress: list[float]) -> None:
    assert progress, "no progress was reported"
    assert all(earlier < later for earlier, later in itertools.pairwise(progress))
    assert 0 < progress[0] and progress[-1] == 1.0


async def test_landscape_source_gives_faststart_h264_renditions_and_a_thumbnail(video_sources, tmp_path):
    plan, recorder = await transcode(video_sources.landscape, "720p,360p,240p", tmp_path)
    assert [s.name for s in plan.skipped] == ["720p"]
    assert set(recorder.finished) == {"360p", "240p", "thumbnail"}
    await check_rendition(recorder.finished["360p"], (640, 360), plan.source.duration, audio=True)
    await check_rendition(recorder.finished["240p"], (426, 240), plan.source.duration, audio=True)
    # The source opens on a second of black: the thumbnail must not be that.
    check_thumbnail(recorder.finished["thumbnail"], (640, 360))
    check_progress(recorder.progress)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["240p.mp4", "360p.mp4", "thumbnail.jpg"]


async def test_rotated_source_gives_upright_portrait_renditions(video_sources, tmp_path):
    plan, recorder = await transcode(video_sources.rotated, "360p", tmp_path)
    await check_rendition(recorder.finished["360p"], (360, 640), plan.source.duration, audio=True)
    check_thumbnail(recorder.finished["thumbnail"], (360, 640))


async def test_silent_480p_source_gives_a_silent_480p_and_no_720p(video_sources, tmp_path):
    plan, recorder = await transcode(video_sources.silent_480p, "720p,480p", tmp_path)
    assert [s.name for s in plan.skipped] == ["720p"] and "upscale" in plan.skipped[0].reason
    assert set(recorder.finished) == {"480p", "thumbnail"}
    await check_rendition(recorder.finished["480p"], (854, 480), plan.source.duration, audio=False)
    check_progress(recorder.progress)


async def test_resume_skips_outputs_already_done(video_sources, tmp_path):
    _, recorder = await transcode(video_sources.landscape, "360p,240p", tmp_path, done={"360p"})
    assert set(recorder.finished) == {"240p", "thumbnail"}
    assert not (tmp_path / "360p.mp4").exists()
    check_progress(recorder.progress)
    assert recorder.progress[0] > 0.5, "the finished 360p counts as done from the start"


async def test_one_ffmpeg_at_a_time_when_the_host_has_one_slot(video_sources, tmp_path):
    running: list[int] = []
    plan = plan_renditions(await probe(video_sources.landscape, MP4), (360, 240))
    made = await transcode_all(
        video_sources.landscape,
        plan,
        tmp_path,
        on_progress=lambda fraction: running.append(len(tool_children())),
        slots=asyncio.Semaphore(1),
    )
    assert set(made) == {"360p", "240p", "thumbnail"}
    assert running and max(running) == 1


async def test_a_failing_ffmpeg_is_a_precise_error_and_leaves_no_files(video_sources, tmp_path):
    source = tmp_path / "source.mp4"
    shutil.copy(video_sources.landscape, source)
    plan = plan_renditions(await probe(source, MP4), (360, 240))
    source.unlink()  # gone from under the worker: every ffmpeg fails at once
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(PermanentError) as caught:
        await transcode_all(source, plan, out_dir)
    assert caught.value.type == "transcode_failed"
    assert "source.mp4: No such file" in caught.value.message and str(tmp_path) not in caught.value.message
    assert list(out_dir.iterdir()) == []
    assert tool_children() == []


class CancelWhenProgressStarts:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ffmpegs: list[psutil.Process] = []

    def on_progress(self, fraction: float) -> None:
        if not self.started.is_set():
            self.ffmpegs = tool_children()
            self.started.set()


def assert_all_ffmpegs_gone(watcher: CancelWhenProgressStarts, out_dir: Path) -> None:
    assert watcher.ffmpegs, "no ffmpeg was running when the transcode was stopped"
    assert tool_children() == []
    for process in watcher.ffmpegs:
        assert not process.is_running(), f"ffmpeg {process.pid} survived"
    assert [path.name for path in out_dir.iterdir() if "partial" in path.name] == []


async def test_cancelling_kills_every_ffmpeg_and_propagates(video_sources, tmp_path):
    plan = plan_renditions(await probe(video_sources.long, MP4), (360, 240))
    watcher = CancelWhenProgressStarts()
    task = asyncio.create_task(transcode_all(video_sources.long, plan, tmp_path, on_progress=watcher.on_progress))
    await watcher.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_all_ffmpegs_gone(watcher, tmp_path)


async def test_a_timeout_kills_every_ffmpeg(video_sources, tmp_path):
    plan = plan_renditions(await probe(video_sources.long, MP4), (360,))
    watcher = CancelWhenProgressStarts()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as deadline:

            def expire_once_started(fraction: float) -> None:
                watcher.on_progress(fraction)
                deadline.reschedule(asyncio.get_running_loop().time())

            await transcode_all(video_sources.long, plan, tmp_path, on_progress=expire_once_started)
    assert_all_ffmpegs_gone(watcher, tmp_path)
