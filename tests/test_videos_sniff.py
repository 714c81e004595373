import pytest

from service.sniffing import SNIFF_BYTES, sniff_video
from tests.support.video_sources import VideoSources, video_sources  # noqa: F401


@pytest.mark.parametrize(
    ("source", "mime"),
    [
        ("landscape", "video/mp4"),
        ("mov", "video/quicktime"),
        ("mkv", "video/x-matroska"),
        ("webm", "video/webm"),
    ],
)
def test_each_container_is_recognised_from_its_first_bytes(video_sources: VideoSources, source: str, mime: str):
    head = getattr(video_sources, source).read_bytes()[:SNIFF_BYTES]
    assert sniff_video(head) == mime


@pytest.mark.parametrize("source", ["random_bytes", "empty"])
def test_non_videos_are_not_recognised(video_sources: VideoSources, source: str):
    assert sniff_video(getattr(video_sources, source).read_bytes()[:SNIFF_BYTES]) is None


def _ftyp(major: bytes) -> bytes:
    return (24).to_bytes(4, "big") + b"ftyp" + major + b"\x00\x00\x02\x00" + major + b"isom"


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (_ftyp(b"isom"), "video/mp4"),
        (_ftyp(b"mp42"), "video/mp4"),
        (_ftyp(b"3gp5"), "video/mp4"),
        (_ftyp(b"qt  "), "video/quicktime"),
        (_ftyp(b"M4A "), None),  # AAC audio
        (_ftyp(b"heic"), None),  # a phone photo
        (_ftyp(b"avif"), None),
        ((1000).to_bytes(4, "big") + b"mdat" + b"\x00" * 16, "video/quicktime"),  # QuickTime before ftyp
        ((4).to_bytes(4, "big") + b"mdat", None),  # an impossible atom size
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm\x42\x87\x81\x02", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x88\x42\x82\x84wav1", None),  # EBML, but no video DocType
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82", None),  # cut off mid-header
        (b"%PDF-1.7\n", None),
        (b"\x89PNG\r\n\x1a\n", None),
    ],
)
def test_synthetic_headers(head: bytes, mime: str | None):
    assert sniff_video(head) == mime
