from dataclasses import replace

import pytest

from pipelines.videos import check_limits, measure, probe
from service.config import Settings
from service.errors import PermanentError
from service.storage.sniffing.video import MATROSKA, MP4, QUICKTIME, WEBM
from testkit.processes import lingering_children
from testkit.video_sources import VideoSources, video_sources  # noqa: F401

pytestmark = pytest.mark.integration


async def test_probe_reports_what_the_source_is(video_sources: VideoSources):
    info = await probe(video_sources.landscape, MP4)
    assert "mp4" in info.container
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.rotation) == (640, 360, 0)
    assert (info.display_width, info.display_height) == (640, 360)
    assert info.fps == 25.0
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert info.has_audio and info.stream_count == 2


async def test_rotation_gives_portrait_display_dimensions(video_sources: VideoSources):
    info = await probe(video_sources.rotated, MP4)
    assert (info.width, info.height) == (640, 360)
    assert info.rotation in (90, 270)
    assert (info.display_width, info.display_height) == (360, 640)


async def test_silent_source(video_sources: VideoSources):
    info = await probe(video_sources.silent_480p, MP4)
    assert not info.has_audio and info.audio_codec is None and info.stream_count == 1
    assert (info.display_width, info.display_height) == (854, 480)


@pytest.mark.parametrize(("source", "media_type"), [("mkv", MATROSKA), ("webm", WEBM), ("mov", QUICKTIME)])
async def test_other_containers_probe(video_sources: VideoSources, source: str, media_type: str):
    info = await probe(getattr(video_sources, source), media_type)
    assert info.width > 0 and info.duration > 0


@pytest.mark.parametrize(
    ("source", "error_type"),
    [
        ("random_bytes", "not_a_video"),
        ("empty", "not_a_video"),
        ("truncated", "corrupt_video"),
        ("audio_only", "no_video_stream"),
    ],
)
async def test_bad_sources_are_refused_precisely(video_sources: VideoSources, source: str, error_type: str):
    with pytest.raises(PermanentError) as caught:
        await probe(getattr(video_sources, source), MP4)
    assert caught.value.type == error_type
    assert caught.value.message


async def test_damage_is_explained_without_the_workers_directories(video_sources: VideoSources):
    with pytest.raises(PermanentError) as caught:
        await probe(video_sources.truncated, MP4)
    assert "moov atom not found" in caught.value.message
    assert str(video_sources.truncated.parent) not in caught.value.message


async def test_a_probe_that_overruns_its_timeout_is_refused_and_leaves_no_ffprobe(video_sources: VideoSources):
    with pytest.raises(PermanentError) as caught:
        await probe(video_sources.landscape, MP4, timeout=0)
    assert caught.value.type == "corrupt_video" and "within" in caught.value.message
    assert await lingering_children("ffprobe") == []


async def test_sane_sources_pass_the_limits(video_sources: VideoSources):
    for source in (video_sources.landscape, video_sources.rotated, video_sources.long):
        check_limits(await probe(source, MP4), Settings())


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"duration": 4 * 3600 + 1.0}, "video_too_long"),
        ({"width": 7681}, "video_too_large"),
        ({"height": 10000}, "video_too_large"),
        ({"fps": 1000.0}, "frame_rate_too_high"),
        ({"stream_count": 17}, "too_many_streams"),
        ({"width": 0}, "corrupt_video"),
        ({"duration": 0.0}, "corrupt_video"),
    ],
)
async def test_absurd_sources_are_refused_before_transcoding(video_sources: VideoSources, change, error_type):
    info = replace(await probe(video_sources.landscape, MP4), **change)
    with pytest.raises(PermanentError) as caught:
        check_limits(info, Settings())
    assert caught.value.type == error_type


async def test_limits_come_from_settings(video_sources: VideoSources):
    info = await probe(video_sources.long, MP4)
    with pytest.raises(PermanentError) as caught:
        check_limits(info, Settings(video_max_duration=60))
    assert caught.value.type == "video_too_long"


async def test_measure_sees_that_a_plain_ffmpeg_mp4_is_not_faststart(video_sources: VideoSources):
    measured = await measure(video_sources.landscape)
    assert measured.faststart is False
    assert (measured.width, measured.height, measured.video_codec, measured.audio_codec) == (640, 360, "h264", "aac")
    assert measured.bytes == video_sources.landscape.stat().st_size
