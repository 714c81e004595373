from dataclasses import replace
from fractions import Fraction

import pytest

from pipelines.videos import DEFAULT_RENDITIONS, VideoInfo, parse_renditions, plan_renditions
from service.errors import PermanentError

SOURCE_1080P = VideoInfo(
    container="mov,mp4,m4a,3gp,3g2,mj2",
    duration=60.0,
    video_codec="h264",
    video_stream=0,
    width=1920,
    height=1080,
    rotation=0,
    sample_aspect_ratio=Fraction(1),
    fps=30.0,
    audio_codec="aac",
    audio_stream=1,
    stream_count=2,
)


@pytest.mark.parametrize(
    ("spec", "heights"),
    [
        ("720p,480p", (720, 480)),
        (" 1080p , 360P ", (1080, 360)),
        ("720", (720,)),
        ("480p,480p,720p", (480, 720)),
        ("", DEFAULT_RENDITIONS),
        (None, DEFAULT_RENDITIONS),
    ],
)
def test_parse_renditions(spec, heights):
    assert parse_renditions(spec) == heights


@pytest.mark.parametrize("spec", ["720x", "abc", "720p,,480p", "99999p", "-720p", "123p", "720p;480p", "٧٢٠p"])
def test_junk_renditions_are_refused_by_name(spec):
    with pytest.raises(PermanentError) as caught:
        parse_renditions(spec)
    assert caught.value.type == "invalid_renditions"
    assert "choose from" in caught.value.message


def test_landscape_ladder_keeps_aspect_with_even_sides_and_rising_bitrates():
    plan = plan_renditions(SOURCE_1080P, (1080, 720, 480, 360, 240))
    sizes = [(r.name, r.width, r.height) for r in plan.renditions]
    assert sizes == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
        ("240p", 426, 240),
    ]
    assert plan.skipped == ()
    bitrates = [r.video_kbps for r in plan.renditions]
    assert bitrates == sorted(bitrates, reverse=True) and 1000 <= plan.renditions[1].video_kbps <= 5000
    assert all(r.audio_kbps for r in plan.renditions)
    assert plan.outputs[-1] is plan.thumbnail and plan.thumbnail.name == "thumbnail"
    assert (plan.thumbnail.width, plan.thumbnail.height, plan.thumbnail.seek) == (640, 360, 6.0)


def test_never_upscales_and_says_why():
    source = replace(SOURCE_1080P, width=854, height=480)
    plan = plan_renditions(source, (720, 480))
    assert [r.name for r in plan.renditions] == ["480p"]
    assert [s.name for s in plan.skipped] == ["720p"]
    assert "480p" in plan.skipped[0].reason and "upscale" in plan.skipped[0].reason


def test_a_source_smaller_than_every_request_is_kept_at_its_own_size():
    source = replace(SOURCE_1080P, width=321, height=181)
    plan = plan_renditions(source, (720, 480))
    assert [s.name for s in plan.skipped] == ["720p", "480p"]
    (only,) = plan.renditions
    assert (only.name, only.width, only.height) == ("180p", 320, 180)


def test_rotated_source_plans_from_its_displayed_portrait_size():
    source = replace(SOURCE_1080P, rotation=90)
    plan = plan_renditions(source, (720, 480))
    assert [(r.width, r.height) for r in plan.renditions] == [(720, 1280), (480, 854)]
    assert (plan.thumbnail.width, plan.thumbnail.height) == (360, 640)


def test_non_square_pixels_are_planned_at_their_displayed_width():
    anamorphic_dvd = replace(SOURCE_1080P, width=720, height=480, sample_aspect_ratio=Fraction(32, 27))
    plan = plan_renditions(anamorphic_dvd, (480,))
    assert [(r.width, r.height) for r in plan.renditions] == [(852, 480)]


def test_silent_source_gets_silent_renditions():
    plan = plan_renditions(replace(SOURCE_1080P, audio_codec=None, audio_stream=None), (720,))
    assert plan.renditions[0].audio_kbps is None
